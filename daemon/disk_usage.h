#pragma once
// Disk space for disk_full: how full a filesystem is (statvfs: bytes and inodes an unprivileged
// writer can still use), judged against floors, and the blocking file work its playbook needs
// (listing with sizes, gzip in place, a move that also crosses filesystems). Everything here
// blocks: call it on the pool.

#include <cstdint>
#include <string>
#include <vector>

#include "daemon/status.h"

namespace guardian {

struct DiskUsage {
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;  // f_bavail: what a non-root writer (the app) can still use
  uint64_t total_inodes = 0;
  uint64_t free_inodes = 0;
  double free_percent() const;
  double free_inodes_percent() const;  // 100 when the filesystem has no inode limit
};
Status ReadDiskUsage(const std::string& path, DiskUsage* out);

// Floors; 0 is off.
struct DiskLimits {
  double min_free_percent = 10;
  uint64_t min_free_bytes = 0;
  double min_free_inodes_percent = 5;
};

// The floors `u` is under, one phrase each ("free 1.2 MiB (3%) under 10%"); empty when none.
std::vector<std::string> JudgeDisk(const DiskUsage& u, const DiskLimits& limits);
// "4.1 MiB free of 24 MiB (17%), 98% inodes free".
std::string DescribeDisk(const DiskUsage& u);

struct FileEntry {
  std::string name;
  uint64_t size = 0;
  int64_t mtime_ms = 0;
  bool regular = false;
};
// The entries of `dir` (not following symlinks), oldest first.
Status ListFiles(const std::string& dir, std::vector<FileEntry>* out);

// Compresses `path` into `path.gz` (a temp file, fsynced, renamed), then removes `path`. On any
// failure (ENOSPC included) the partial output is removed and `path` is left as it was.
Status GzipFile(const std::string& path, uint64_t* bytes_before, uint64_t* bytes_after);

// Moves a file: rename(2), or on another filesystem a copy (fsynced) and then an unlink.
// Refuses to replace an existing `to`.
Status MoveFile(const std::string& from, const std::string& to);

}  // namespace guardian
