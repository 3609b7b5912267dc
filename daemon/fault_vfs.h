#pragma once
// FaultVfs: the seam the store's file I/O goes through. A SQLite VFS ("guardian-fault") that
// passes every call to the platform's default VFS, unless a fault plan says to fail writes
// the way a real disk does: ENOSPC (SQLITE_FULL), EIO (SQLITE_IOERR_WRITE), a short write
// (half the bytes written, then SQLITE_FULL, as SQLite's unix VFS reports one) or a failing
// fsync (SQLITE_IOERR_FSYNC). Tests set plans; guardiand only sets one through the test-hook
// API (GUARDIAN_TEST_HOOKS), so a release build always passes through.
//
// Thread: RegisterFaultVfs once before opening; the plan and stats may be read and set from
// any thread.

#include <cstdint>
#include <string>

#include "daemon/status.h"

namespace guardian {

inline constexpr const char* kFaultVfsName = "guardian-fault";

enum class FaultKind { kNone, kNoSpace, kIoError, kShortWrite, kFsyncError };

struct FaultPlan {
  FaultKind kind = FaultKind::kNone;
  int64_t after = 0;   // let this many writes (or syncs, for kFsyncError) through first
  int64_t count = -1;  // then fail this many; -1: every one until the plan changes
};

struct FaultStats {
  int64_t writes = 0;    // xWrite calls seen
  int64_t syncs = 0;     // xSync calls seen
  int64_t injected = 0;  // faults returned
};

// Registers the VFS (not as the default); safe to call more than once.
Status RegisterFaultVfs();
void SetFaultPlan(const FaultPlan& plan);
FaultStats CurrentFaultStats();

// "enospc", "eio", "short_write", "fsync_eio", "none"; anything else is an error naming them.
Status ParseFaultKind(const std::string& name, FaultKind* out);

}  // namespace guardian
