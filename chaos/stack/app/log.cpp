// The app log with reopen-on-rotate and ENOSPC accounting.

#include "chaos/stack/app/log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "chaos/stack/app/status.h"
#include "chaos/stack/app/util.h"

namespace demoapp {

Log::Log(std::string path, Status& status) : path_(std::move(path)), status_(status) {
  std::lock_guard lock(mu_);
  OpenLocked();
}

Log::~Log() {
  if (fd_ >= 0) close(fd_);
}

void Log::OpenLocked() {
  if (fd_ >= 0) close(fd_);
  // The folder may have been removed along with the file; a rotate must not lose the log.
  MakeDirs(std::filesystem::path(path_).parent_path().string());
  fd_ = open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  struct stat st;
  if (fd_ >= 0 && fstat(fd_, &st) == 0) {
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }
}

void Log::Reopen() {
  std::lock_guard lock(mu_);
  OpenLocked();
}

void Log::ReopenIfMoved() {
  std::lock_guard lock(mu_);
  struct stat st;
  if (fd_ >= 0 && stat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) return;
  OpenLocked();
}

void Log::Write(const char* level, const std::string& message) {
  std::string line = IsoTime(NowMs()) + " " + level + " " + message + "\n";
  int err = 0;
  {
    std::lock_guard lock(mu_);
    if (fd_ < 0) OpenLocked();
    err = fd_ < 0 ? errno : WriteAll(fd_, line.data(), line.size());
  }
  // Outside the lock: the status never calls back into the log.
  if (err == ENOSPC) status_.DiskError("log", path_ + ": " + strerror(err));
}

}  // namespace demoapp
