#include "daemon/cgroup.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace guardian {
namespace {

namespace fs = std::filesystem;

// cgroupfs files take one write of the whole value.
Status WriteValue(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError(path + ": " + std::strerror(errno));
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n < 0)
    return Status::IOError("writing '" + value + "' to " + path + ": " + std::strerror(err));
  return Status::OK();
}

}  // namespace

Status PrepareMemoryCgroup(const std::string& dir, int64_t limit_mb) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create cgroup " + dir + ": " + ec.message());
  bool v2 = fs::exists(dir + "/memory.max", ec);
  bool v1 = fs::exists(dir + "/memory.limit_in_bytes", ec);
  if (!v1 && !v2)
    return Status::InvalidArgument(
        dir +
        " is not in a memory cgroup hierarchy (no memory.max or memory.limit_in_bytes; on "
        "cgroup v2 enable the memory controller in the parent's cgroup.subtree_control)");
  if (limit_mb <= 0) return Status::OK();
  std::string bytes = std::to_string(static_cast<uint64_t>(limit_mb) << 20);
  return WriteValue(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"), bytes);
}

Status JoinCgroup(const std::string& dir, pid_t pid) {
  return WriteValue(dir + "/cgroup.procs", std::to_string(pid));
}

}  // namespace guardian
