#include "daemon/disk_usage.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "daemon/format.h"

namespace guardian {
namespace {

Status Errno(const std::string& what, const std::string& path, int err = errno) {
  return Status::IOError(what + " " + path + ": " + std::strerror(err));
}

// Writes all of `n` bytes; false with errno set.
bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

double DiskUsage::free_percent() const {
  return total_bytes ? 100.0 * static_cast<double>(free_bytes) / static_cast<double>(total_bytes)
                     : 100.0;
}

double DiskUsage::free_inodes_percent() const {
  return total_inodes ? 100.0 * static_cast<double>(free_inodes) / static_cast<double>(total_inodes)
                      : 100.0;
}

Status ReadDiskUsage(const std::string& path, DiskUsage* out) {
  struct statvfs v;
  if (::statvfs(path.c_str(), &v) != 0) return Errno("statvfs", path);
  out->total_bytes = static_cast<uint64_t>(v.f_blocks) * v.f_frsize;
  out->free_bytes = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
  out->total_inodes = v.f_files;
  out->free_inodes = v.f_favail;
  return Status::OK();
}

std::vector<std::string> JudgeDisk(const DiskUsage& u, const DiskLimits& l) {
  std::vector<std::string> out;
  std::string free =
      "free " + FormatBytes(u.free_bytes) + " (" + FormatPercent(u.free_percent()) + ")";
  if (l.min_free_percent > 0 && u.free_percent() < l.min_free_percent)
    out.push_back(free + " under " + FormatPercent(l.min_free_percent));
  else if (l.min_free_bytes > 0 && u.free_bytes < l.min_free_bytes)
    out.push_back(free + " under " + FormatBytes(l.min_free_bytes));
  if (l.min_free_inodes_percent > 0 && u.total_inodes > 0 &&
      u.free_inodes_percent() < l.min_free_inodes_percent)
    out.push_back("free inodes " + std::to_string(u.free_inodes) + " (" +
                  FormatPercent(u.free_inodes_percent()) + ") under " +
                  FormatPercent(l.min_free_inodes_percent));
  return out;
}

std::string DescribeDisk(const DiskUsage& u) {
  return FormatBytes(u.free_bytes) + " free of " + FormatBytes(u.total_bytes) + " (" +
         FormatPercent(u.free_percent()) + "), " + FormatPercent(u.free_inodes_percent()) +
         " inodes free";
}

Status ListFiles(const std::string& dir, std::vector<FileEntry>* out) {
  out->clear();
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Errno("opendir", dir);
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    FileEntry f;
    f.name = name;
    f.size = static_cast<uint64_t>(st.st_size);
    f.mtime_ms = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1'000'000;
    f.regular = S_ISREG(st.st_mode);
    out->push_back(f);
  }
  ::closedir(d);
  std::sort(out->begin(), out->end(), [](const FileEntry& a, const FileEntry& b) {
    return a.mtime_ms != b.mtime_ms ? a.mtime_ms < b.mtime_ms : a.name < b.name;
  });
  return Status::OK();
}

Status GzipFile(const std::string& path, uint64_t* bytes_before, uint64_t* bytes_after) {
  int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (in < 0) return Errno("open", path);
  struct stat st;
  if (::fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(in);
    return Status::InvalidArgument(path + " is not a regular file");
  }
  std::string gz = path + ".gz";
  std::string tmp = gz + ".guardian-tmp";
  int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0777);
  if (out < 0) {
    Status s = Errno("create", tmp);
    ::close(in);
    return s;
  }
  z_stream z{};
  // windowBits 15 + 16: a gzip wrapper, so `zcat` and `gunzip` read the result.
  deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::vector<unsigned char> ibuf(1 << 16), obuf(1 << 16);
  Status result = Status::OK();
  uint64_t written = 0;
  bool done = false;
  while (!done && result.ok()) {
    ssize_t n = ::read(in, ibuf.data(), ibuf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      result = Errno("read", path);
      break;
    }
    z.next_in = ibuf.data();
    z.avail_in = static_cast<uInt>(n);
    int flush = n == 0 ? Z_FINISH : Z_NO_FLUSH;
    do {
      z.next_out = obuf.data();
      z.avail_out = static_cast<uInt>(obuf.size());
      int rc = deflate(&z, flush);
      if (rc == Z_STREAM_ERROR) {
        result = Status::IOError("deflate " + path + " failed");
        break;
      }
      size_t have = obuf.size() - z.avail_out;
      if (!WriteAll(out, reinterpret_cast<const char*>(obuf.data()), have)) {
        result = Errno("write", tmp);
        break;
      }
      written += have;
      if (rc == Z_STREAM_END) done = true;
    } while (z.avail_out == 0);
  }
  deflateEnd(&z);
  ::close(in);
  if (result.ok() && ::fsync(out) != 0) result = Errno("fsync", tmp);
  if (::close(out) != 0 && result.ok()) result = Errno("close", tmp);
  if (result.ok() && ::rename(tmp.c_str(), gz.c_str()) != 0) result = Errno("rename", gz);
  if (!result.ok()) {
    ::unlink(tmp.c_str());  // the original stays as it was
    return result;
  }
  if (::unlink(path.c_str()) != 0) return Errno("remove", path);
  *bytes_before = static_cast<uint64_t>(st.st_size);
  *bytes_after = written;
  return Status::OK();
}

Status MoveFile(const std::string& from, const std::string& to) {
  struct stat st;
  if (::lstat(to.c_str(), &st) == 0) return Status::InvalidArgument(to + " exists already");
  if (::rename(from.c_str(), to.c_str()) == 0) return Status::OK();
  if (errno != EXDEV) return Errno("rename " + from + " to", to);
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (in < 0) return Errno("open", from);
  if (::fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(in);
    return Status::InvalidArgument(from + " is not a regular file");
  }
  std::string tmp = to + ".guardian-tmp";
  int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0777);
  if (out < 0) {
    Status s = Errno("create", tmp);
    ::close(in);
    return s;
  }
  Status result = Status::OK();
  std::vector<char> buf(1 << 16);
  while (true) {
    ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      result = Errno("read", from);
      break;
    }
    if (n == 0) break;
    if (!WriteAll(out, buf.data(), static_cast<size_t>(n))) {
      result = Errno("write", tmp);
      break;
    }
  }
  ::close(in);
  if (result.ok() && ::fsync(out) != 0) result = Errno("fsync", tmp);
  if (::close(out) != 0 && result.ok()) result = Errno("close", tmp);
  if (result.ok() && ::rename(tmp.c_str(), to.c_str()) != 0) result = Errno("rename", to);
  if (!result.ok()) {
    ::unlink(tmp.c_str());
    return result;
  }
  // The copy is safe on disk before the original goes.
  if (::unlink(from.c_str()) != 0) return Errno("remove", from);
  return Status::OK();
}

}  // namespace guardian
