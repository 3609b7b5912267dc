#include "daemon/fault_vfs.h"

#include <sqlite3.h>

#include <cstring>
#include <mutex>

#include "daemon/crash_point.h"

namespace guardian {
namespace {

std::mutex g_mu;
FaultPlan g_plan;    // guarded by g_mu
FaultStats g_stats;  // guarded by g_mu
sqlite3_vfs* g_base = nullptr;
sqlite3_vfs g_vfs;

// What one I/O call should do under the current plan. `is_sync` picks the counter.
bool ShouldFail(bool is_sync, FaultKind* kind) {
  std::lock_guard<std::mutex> lock(g_mu);
  (is_sync ? g_stats.syncs : g_stats.writes)++;
  FaultKind k = g_plan.kind;
  if (k == FaultKind::kNone || is_sync != (k == FaultKind::kFsyncError)) return false;
  if (g_plan.after > 0) {
    --g_plan.after;
    return false;
  }
  if (g_plan.count == 0) return false;
  if (g_plan.count > 0) --g_plan.count;
  ++g_stats.injected;
  *kind = k;
  return true;
}

// The file we hand SQLite: our header, followed in the same allocation by the base VFS's file.
struct FaultFile {
  sqlite3_file header;
  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};

sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f)->real(); }

int Close(sqlite3_file* f) { return Real(f)->pMethods->xClose(Real(f)); }
int Read(sqlite3_file* f, void* buf, int amt, sqlite3_int64 off) {
  return Real(f)->pMethods->xRead(Real(f), buf, amt, off);
}
int Write(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) {
  // Crash tests (daemon/crash_point.h): die in the middle of a store write, torn or not.
  if (CrashPointDue("store_write_torn")) {
    if (amt > 1) Real(f)->pMethods->xWrite(Real(f), buf, amt / 2, off);
    CrashNow();
  }
  CrashPoint("store_write");
  FaultKind kind;
  if (ShouldFail(false, &kind)) {
    switch (kind) {
      case FaultKind::kNoSpace:
        return SQLITE_FULL;
      case FaultKind::kIoError:
        return SQLITE_IOERR_WRITE;
      case FaultKind::kShortWrite:
        // A torn write: part of the page reaches the file, then the disk is full.
        if (amt > 1) Real(f)->pMethods->xWrite(Real(f), buf, amt / 2, off);
        return SQLITE_FULL;
      default:
        break;
    }
  }
  return Real(f)->pMethods->xWrite(Real(f), buf, amt, off);
}
int Truncate(sqlite3_file* f, sqlite3_int64 size) {
  return Real(f)->pMethods->xTruncate(Real(f), size);
}
int Sync(sqlite3_file* f, int flags) {
  FaultKind kind;
  if (ShouldFail(true, &kind)) return SQLITE_IOERR_FSYNC;
  return Real(f)->pMethods->xSync(Real(f), flags);
}
int FileSize(sqlite3_file* f, sqlite3_int64* size) {
  return Real(f)->pMethods->xFileSize(Real(f), size);
}
int Lock(sqlite3_file* f, int level) { return Real(f)->pMethods->xLock(Real(f), level); }
int Unlock(sqlite3_file* f, int level) { return Real(f)->pMethods->xUnlock(Real(f), level); }
int CheckReservedLock(sqlite3_file* f, int* out) {
  return Real(f)->pMethods->xCheckReservedLock(Real(f), out);
}
int FileControl(sqlite3_file* f, int op, void* arg) {
  return Real(f)->pMethods->xFileControl(Real(f), op, arg);
}
int SectorSize(sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); }
int DeviceCharacteristics(sqlite3_file* f) {
  return Real(f)->pMethods->xDeviceCharacteristics(Real(f));
}
// WAL's shared memory (version 2 methods): the store runs in WAL mode, so these must pass.
int ShmMap(sqlite3_file* f, int page, int size, int extend, void volatile** out) {
  return Real(f)->pMethods->xShmMap(Real(f), page, size, extend, out);
}
int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
  return Real(f)->pMethods->xShmLock(Real(f), offset, n, flags);
}
void ShmBarrier(sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); }
int ShmUnmap(sqlite3_file* f, int del) { return Real(f)->pMethods->xShmUnmap(Real(f), del); }
// Memory-mapped I/O (version 3).
int Fetch(sqlite3_file* f, sqlite3_int64 off, int amt, void** out) {
  return Real(f)->pMethods->xFetch(Real(f), off, amt, out);
}
int Unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
  return Real(f)->pMethods->xUnfetch(Real(f), off, p);
}

// One method table per version the base file may have: SQLite checks iVersion before calling
// the shm and fetch methods, so ours must not claim more than the real file has.
sqlite3_io_methods MakeMethods(int version) {
  sqlite3_io_methods m{};
  m.iVersion = version;
  m.xClose = Close;
  m.xRead = Read;
  m.xWrite = Write;
  m.xTruncate = Truncate;
  m.xSync = Sync;
  m.xFileSize = FileSize;
  m.xLock = Lock;
  m.xUnlock = Unlock;
  m.xCheckReservedLock = CheckReservedLock;
  m.xFileControl = FileControl;
  m.xSectorSize = SectorSize;
  m.xDeviceCharacteristics = DeviceCharacteristics;
  if (version >= 2) {
    m.xShmMap = ShmMap;
    m.xShmLock = ShmLock;
    m.xShmBarrier = ShmBarrier;
    m.xShmUnmap = ShmUnmap;
  }
  if (version >= 3) {
    m.xFetch = Fetch;
    m.xUnfetch = Unfetch;
  }
  return m;
}
const sqlite3_io_methods kMethods[3] = {MakeMethods(1), MakeMethods(2), MakeMethods(3)};

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  auto* ff = reinterpret_cast<FaultFile*>(f);
  ff->header.pMethods = nullptr;
  sqlite3_file* real = ff->real();
  int rc = g_base->xOpen(g_base, name, real, flags, out_flags);
  // SQLite calls xClose exactly when pMethods is set, so ours mirrors the real file's.
  if (real->pMethods) {
    int v = real->pMethods->iVersion;
    ff->header.pMethods = &kMethods[(v < 1 ? 1 : v > 3 ? 3 : v) - 1];
  }
  return rc;
}
int Delete(sqlite3_vfs*, const char* name, int sync_dir) {
  return g_base->xDelete(g_base, name, sync_dir);
}
int Access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return g_base->xAccess(g_base, name, flags, out);
}
int FullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_base->xFullPathname(g_base, name, n, out);
}
void* DlOpen(sqlite3_vfs*, const char* name) { return g_base->xDlOpen(g_base, name); }
void DlError(sqlite3_vfs*, int n, char* out) { g_base->xDlError(g_base, n, out); }
void (*DlSym(sqlite3_vfs*, void* h, const char* sym))(void) {
  return g_base->xDlSym(g_base, h, sym);
}
void DlClose(sqlite3_vfs*, void* h) { g_base->xDlClose(g_base, h); }
int Randomness(sqlite3_vfs*, int n, char* out) { return g_base->xRandomness(g_base, n, out); }
int Sleep(sqlite3_vfs*, int us) { return g_base->xSleep(g_base, us); }
int CurrentTime(sqlite3_vfs*, double* out) { return g_base->xCurrentTime(g_base, out); }
int GetLastError(sqlite3_vfs*, int n, char* out) { return g_base->xGetLastError(g_base, n, out); }
int CurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* out) {
  return g_base->xCurrentTimeInt64(g_base, out);
}

}  // namespace

Status RegisterFaultVfs() {
  static std::once_flag once;
  static int rc = SQLITE_OK;
  std::call_once(once, [] {
    g_base = sqlite3_vfs_find(nullptr);
    if (!g_base) {
      rc = SQLITE_ERROR;
      return;
    }
    std::memset(&g_vfs, 0, sizeof g_vfs);
    // Version 2: the system-call overrides of version 3 are only for SQLite's own tests.
    g_vfs.iVersion = 2;
    g_vfs.szOsFile = static_cast<int>(sizeof(FaultFile)) + g_base->szOsFile;
    g_vfs.mxPathname = g_base->mxPathname;
    g_vfs.zName = kFaultVfsName;
    g_vfs.xOpen = Open;
    g_vfs.xDelete = Delete;
    g_vfs.xAccess = Access;
    g_vfs.xFullPathname = FullPathname;
    g_vfs.xDlOpen = DlOpen;
    g_vfs.xDlError = DlError;
    g_vfs.xDlSym = DlSym;
    g_vfs.xDlClose = DlClose;
    g_vfs.xRandomness = Randomness;
    g_vfs.xSleep = Sleep;
    g_vfs.xCurrentTime = CurrentTime;
    g_vfs.xGetLastError = GetLastError;
    g_vfs.xCurrentTimeInt64 = g_base->iVersion >= 2 ? CurrentTimeInt64 : nullptr;
    rc = sqlite3_vfs_register(&g_vfs, 0);
  });
  if (rc != SQLITE_OK)
    return Status::IOError(std::string("register SQLite VFS: ") + sqlite3_errstr(rc));
  return Status::OK();
}

void SetFaultPlan(const FaultPlan& plan) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_plan = plan;
}

FaultStats CurrentFaultStats() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_stats;
}

namespace {
struct KindName {
  FaultKind kind;
  const char* name;
};
constexpr KindName kKindNames[] = {{FaultKind::kNone, "none"},
                                   {FaultKind::kNoSpace, "enospc"},
                                   {FaultKind::kIoError, "eio"},
                                   {FaultKind::kShortWrite, "short_write"},
                                   {FaultKind::kFsyncError, "fsync_eio"}};
}  // namespace

Status ParseFaultKind(const std::string& name, FaultKind* out) {
  std::string names;
  for (const auto& k : kKindNames) {
    if (name == k.name) {
      *out = k.kind;
      return Status::OK();
    }
    names += std::string(names.empty() ? "" : ", ") + k.name;
  }
  return Status::InvalidArgument("fault must be one of " + names);
}

}  // namespace guardian
