#include "daemon/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace guardian {

Status ReadRegularFile(const std::string& path, size_t max_bytes, std::string* out) {
  out->clear();
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound("file is missing");
    return Status::IOError(std::string("cannot read: ") + std::strerror(errno));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::IOError("not a regular file");
  }
  if (static_cast<size_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return Status::InvalidArgument("larger than " + std::to_string(max_bytes) + " bytes");
  }
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      Status s = Status::IOError(std::string("read: ") + std::strerror(errno));
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    if (out->size() + static_cast<size_t>(n) > max_bytes) {  // grew while we read
      ::close(fd);
      out->clear();
      return Status::InvalidArgument("larger than " + std::to_string(max_bytes) + " bytes");
    }
    out->append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return Status::OK();
}

std::vector<std::filesystem::path> ListDir(const std::filesystem::path& dir, std::error_code* ec) {
  std::vector<std::filesystem::path> out;
  std::filesystem::directory_iterator it(dir, *ec), end;
  // Increment with an error_code: the range-for form throws, and this runs on pool threads.
  while (!*ec && it != end) {
    out.push_back(it->path());
    it.increment(*ec);
  }
  if (*ec) out.clear();
  std::sort(out.begin(), out.end());
  return out;
}

Status ReadJsonObject(const std::string& path, size_t max_bytes, nlohmann::json* out) {
  std::string text;
  Status s = ReadRegularFile(path, max_bytes, &text);
  if (!s.ok()) return s;
  *out = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!out->is_object()) {
    *out = nlohmann::json();
    return Status::Corruption("not a JSON object");
  }
  return Status::OK();
}

Status WriteFileAtomic(const std::string& path, const std::string& content, int mode) {
  std::string tmp = path + ".tmp";
  auto fail = [&](const std::string& what) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Status::IOError(what + " " + tmp + ": " + std::strerror(err));
  };
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return Status::IOError("cannot create " + tmp + ": " + std::strerror(errno));
  // A temp file left by an earlier crash keeps its old mode through O_CREAT: set it (a 0600
  // secret must never be readable in between).
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    return fail("cannot chmod");
  }
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      errno = err;
      return fail("cannot write");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    return fail("cannot fsync");
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("cannot rename");
  // The rename itself is durable only once the folder is synced.
  std::string dir = std::filesystem::path(path).parent_path().string();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::OK();
}

}  // namespace guardian
