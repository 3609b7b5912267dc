#include "daemon/run_as.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace guardian {

std::string RunAs::ToString() const {
  std::string out;
  if (!user.empty()) out = "user " + user;
  if (gid >= 0) {
    if (!out.empty()) out += ", ";
    out += "group " + (group.empty() ? std::to_string(gid) : group);
  }
  return out;
}

namespace {

// Runs a getpwnam_r-style look-up, growing the buffer while it asks for more (ERANGE); sysconf
// may not know a size at all. Returns the look-up's error number.
template <typename Entry, typename Lookup>
int LookUp(int size_name, Entry* entry, Entry** found, std::vector<char>* buf, Lookup lookup) {
  long n = ::sysconf(size_name);
  buf->resize(n > 0 ? static_cast<size_t>(n) : 4096);
  int rc;
  while ((rc = lookup(entry, buf->data(), buf->size(), found)) == ERANGE &&
         buf->size() < (1u << 20))
    buf->resize(buf->size() * 2);
  // Some NSS modules report "no such entry" as ENOENT or ESRCH instead of a null result.
  if (rc == ENOENT || rc == ESRCH) {
    *found = nullptr;
    return 0;
  }
  return rc;
}

}  // namespace

Status ResolveGroup(const std::string& group, int64_t* gid) {
  struct group gr {};
  struct group* found = nullptr;
  std::vector<char> buf;
  int rc = LookUp(_SC_GETGR_R_SIZE_MAX, &gr, &found, &buf,
                  [&](struct group* e, char* b, size_t n, struct group** f) {
                    return ::getgrnam_r(group.c_str(), e, b, n, f);
                  });
  if (rc != 0) return Status::IOError("cannot look up group '" + group + "': " + std::strerror(rc));
  if (!found) return Status::NotFound("no group named '" + group + "' on this host");
  *gid = static_cast<int64_t>(gr.gr_gid);
  return Status::OK();
}

Status ResolveRunAs(const std::string& user, const std::string& group, RunAs* out) {
  RunAs r;
  r.user = user;
  r.group = group;
  if (!user.empty()) {
    struct passwd pw {};
    struct passwd* found = nullptr;
    std::vector<char> buf;
    int rc = LookUp(_SC_GETPW_R_SIZE_MAX, &pw, &found, &buf,
                    [&](struct passwd* e, char* b, size_t n, struct passwd** f) {
                      return ::getpwnam_r(user.c_str(), e, b, n, f);
                    });
    if (rc != 0) return Status::IOError("cannot look up user '" + user + "': " + std::strerror(rc));
    if (!found) return Status::NotFound("no user named '" + user + "' on this host");
    r.uid = static_cast<int64_t>(pw.pw_uid);
    r.gid = static_cast<int64_t>(pw.pw_gid);  // its primary group, unless `group` says otherwise
  }
  if (!group.empty()) {
    Status s = ResolveGroup(group, &r.gid);
    if (!s.ok()) return s;
  }
  *out = std::move(r);
  return Status::OK();
}

}  // namespace guardian
