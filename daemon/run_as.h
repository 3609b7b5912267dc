#pragma once
// RunAs: the user and group a process Guardian spawns for a check or a service runs as
// (`user:` and `group:` in guardian.yaml), resolved to ids when the config is loaded, so a
// name that does not exist is a config error with its line, not a failed start later.

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "daemon/status.h"

namespace guardian {

struct RunAs {
  std::string user;   // empty: guardiand's own user
  std::string group;  // empty: the user's primary group (guardiand's own without a user)
  int64_t uid = -1;   // -1: unchanged
  int64_t gid = -1;   // -1: unchanged

  bool changes() const { return uid >= 0 || gid >= 0; }
  // "user nobody, group nogroup"; "" when nothing changes.
  std::string ToString() const;
  bool operator==(const RunAs&) const = default;
};

// Resolves `user` (getpwnam_r) and `group` (getgrnam_r); either may be empty. A user without a
// group runs with the user's primary group. NotFound names what does not exist.
Status ResolveRunAs(const std::string& user, const std::string& group, RunAs* out);

// Resolves a group name alone (the API socket's group). NotFound when there is none.
Status ResolveGroup(const std::string& group, int64_t* gid);

}  // namespace guardian
