#pragma once
// Small helpers shared by every part of the demo app: clocks, errno names, whole-file reads and
// atomic file replacement.

#include <cstdint>
#include <string>

namespace demoapp {

// Wall-clock milliseconds since the epoch (every time the app reports uses this clock).
int64_t NowMs();

// "2026-11-23T10:00:00.123Z" for a wall-clock time in milliseconds.
std::string IsoTime(int64_t ms);

// "EADDRINUSE" for EADDRINUSE; "E<number>" when the C library has no name for it.
std::string ErrnoName(int err);

// Reads a whole file of at most `max_bytes`. Returns 0 or the errno (EFBIG when too large).
int ReadFile(const std::string& path, size_t max_bytes, std::string* out);

// Writes `path`.tmp and renames it over `path`, so readers never see a half-written file.
// Returns 0 or the errno of the step that failed (the tmp file is removed then).
int WriteFileAtomic(const std::string& path, const std::string& content);

// Writes all of `data` to `fd`, retrying short writes and EINTR. Returns 0 or the errno.
int WriteAll(int fd, const char* data, size_t size);

// mkdir -p. Returns 0 or the errno.
int MakeDirs(const std::string& dir);

}  // namespace demoapp
