#pragma once
// What every process Guardian spawns (a service, a playbook's program, a check's on_fail
// command) starts with: a minimal fixed environment plus what the config gives it, never
// guardiand's own (which may hold secrets), and the configured user and group.

#include <uv.h>

#include <map>
#include <string>
#include <vector>

#include "daemon/run_as.h"

namespace guardian {

// "NAME=value" entries: PATH and LANG, then `extra` (which may replace them).
std::vector<std::string> SpawnEnvironment(const std::map<std::string, std::string>& extra);

// Holds the environment's strings for uv_process_options_t::env (null-terminated).
class EnvBlock {
 public:
  explicit EnvBlock(std::vector<std::string> entries);
  EnvBlock(const EnvBlock&) = delete;
  EnvBlock& operator=(const EnvBlock&) = delete;
  char** get() { return ptrs_.data(); }

 private:
  std::vector<std::string> entries_;
  std::vector<char*> ptrs_;
};

// Sets uid and gid on `o` when `run_as` changes them. libuv then also drops every
// supplementary group (setgroups(0, NULL)) in the child, so a process dropped from root keeps
// none of root's groups.
void ApplyRunAs(const RunAs& run_as, uv_process_options_t* o);

}  // namespace guardian
