// guardian.sqlite: check, back up, checkpoint and restore a SQLite database the check declares
// (under its paths, see docs/playbook-api.md). Everything runs on the thread pool and yields the
// phase. Backups live in the check's state dir (`backups/`), verified before they count. In a
// dry run backup, checkpoint and restore are recorded, not done.
#include <sqlite3.h>

#include <filesystem>

#include "daemon/clock.h"
#include "daemon/file_util.h"
#include "daemon/sqlite_check.h"
#include "daemon/work.h"
#include "plugins/host_api.h"
#include "plugins/playbook_run.h"

namespace guardian {
namespace {
namespace fs = std::filesystem;

std::string Resolve(lua_State* L, int idx, bool write) {
  std::string path = luaL_checkstring(L, idx);
  std::string resolved;
  Status s = PlaybookRun::From(L)->ResolvePath(path, write, &resolved);
  if (!s.ok()) luaL_error(L, "guardian.sqlite: %s", s.message().c_str());
  return resolved;
}

std::string BackupDir(PlaybookRun* run) { return run->check_state_dir() + "/backups"; }

int PushBackup(lua_State* L, const BackupInfo& b, int64_t now) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, b.path.c_str());
  lua_setfield(L, -2, "path");
  lua_pushinteger(L, b.taken_at);
  lua_setfield(L, -2, "taken_at");
  lua_pushinteger(L, b.bytes);
  lua_setfield(L, -2, "bytes");
  lua_pushinteger(L, now - b.taken_at);
  lua_setfield(L, -2, "age_ms");
  return 1;
}

int64_t WallMs() { return SystemClock::Get()->WallMs(); }

// Runs `work` on the pool and resumes with what `push` pushes.
template <typename Result>
int AwaitPool(lua_State* L, const char* what, std::function<void(Result*)> work,
              std::function<int(lua_State*, const Result&)> push) {
  PlaybookRun* run = PlaybookRun::From(L);
  return run->Await(L, what, [run, work, push](PlaybookRun::Resume resume) {
    auto result = std::make_shared<Result>();
    QueueWork(
        run->loop(), [work, result] { work(result.get()); },
        [resume, result, push] {
          resume([result, push](lua_State* L) { return push(L, *result); });
        });
    return std::function<void()>();
  });
}

// guardian.sqlite.check(path [, {full = true}]) -> ok, summary
//   quick_check (integrity_check with full) through a read-only connection.
int Check(lua_State* L) {
  std::string path = Resolve(L, 1, false);
  bool full = false;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "full");
    full = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  return AwaitPool<DbCheck>(
      L, "guardian.sqlite.check", [path, full](DbCheck* c) { *c = CheckDatabase(path, full); },
      [](lua_State* L, const DbCheck& c) {
        lua_pushboolean(L, c.ok);
        lua_pushstring(L, c.Summary().c_str());
        return 2;
      });
}

// guardian.sqlite.backups() -> { {path, taken_at, bytes, age_ms}, ... } newest first
int Backups(lua_State* L) {
  std::string dir = BackupDir(PlaybookRun::From(L));
  return AwaitPool<std::vector<BackupInfo>>(
      L, "guardian.sqlite.backups",
      [dir](std::vector<BackupInfo>* out) { *out = ListBackups(dir); },
      [](lua_State* L, const std::vector<BackupInfo>& all) {
        int64_t now = WallMs();
        lua_createtable(L, static_cast<int>(all.size()), 0);
        for (size_t i = 0; i < all.size(); ++i) {
          PushBackup(L, all[i], now);
          lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
        }
        return 1;
      });
}

struct Outcome {
  Status status;
  BackupInfo backup;
  std::string message;
};

// guardian.sqlite.backup(path [, {keep = 5}]) -> {path, taken_at, bytes, age_ms} or nil, why
//   A verified online backup into the check's backups folder; the newest `keep` are kept.
int Backup(lua_State* L) {
  std::string path = Resolve(L, 1, false);
  int keep = 5;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "keep");
    if (!lua_isnil(L, -1)) keep = static_cast<int>(luaL_checkinteger(L, -1));
    lua_pop(L, 1);
  }
  PlaybookRun* run = PlaybookRun::From(L);
  run->CheckCanWait(L, "guardian.sqlite.backup");
  if (run->RecordAction(L, "guardian.sqlite.backup", 1))
    return run->AwaitNothing(L, "guardian.sqlite.backup", [](lua_State* L) {
      return PushBackup(L, BackupInfo{"(dry run)", WallMs(), 0}, WallMs());
    });
  std::string dir = BackupDir(run);
  return AwaitPool<Outcome>(
      L, "guardian.sqlite.backup",
      [path, dir, keep](Outcome* o) {
        o->status = TakeBackup(path, dir, WallMs(), keep, &o->backup);
      },
      [](lua_State* L, const Outcome& o) {
        if (!o.status.ok()) {
          lua_pushnil(L);
          lua_pushstring(L, o.status.message().c_str());
          return 2;
        }
        return PushBackup(L, o.backup, WallMs());
      });
}

// guardian.sqlite.checkpoint(path) -> ok, message: PRAGMA wal_checkpoint(TRUNCATE) through a
// read-write connection, folding the -wal back into the database file.
int Checkpoint(lua_State* L) {
  std::string path = Resolve(L, 1, true);
  PlaybookRun* run = PlaybookRun::From(L);
  run->CheckCanWait(L, "guardian.sqlite.checkpoint");
  if (run->RecordAction(L, "guardian.sqlite.checkpoint", 1))
    return run->AwaitNothing(L, "guardian.sqlite.checkpoint", [](lua_State* L) {
      lua_pushboolean(L, 1);
      lua_pushstring(L, "checkpointed (dry run)");
      return 2;
    });
  return AwaitPool<Outcome>(
      L, "guardian.sqlite.checkpoint",
      [path](Outcome* o) {
        sqlite3* db = nullptr;
        int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
        if (rc == SQLITE_OK) {
          sqlite3_busy_timeout(db, 1000);
          rc = sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
        }
        if (rc != SQLITE_OK) {
          o->status = Status::IOError(SqliteCodeName(rc) + ": " +
                                      (db ? sqlite3_errmsg(db) : "cannot open " + path));
        } else {
          o->message = "checkpointed " + path;
        }
        sqlite3_close(db);
      },
      [](lua_State* L, const Outcome& o) {
        lua_pushboolean(L, o.status.ok());
        lua_pushstring(L, o.status.ok() ? o.message.c_str() : o.status.message().c_str());
        return 2;
      });
}

// guardian.sqlite.restore(backup, path) -> true or nil, why: puts a backup from the check's
// backups folder in place of `path` (a copy renamed over it, so readers never see half a file)
// and removes path-wal and path-shm, whose pages belong to the file that was replaced.
int Restore(lua_State* L) {
  std::string backup = Resolve(L, 1, false);
  std::string path = Resolve(L, 2, true);
  PlaybookRun* run = PlaybookRun::From(L);
  std::error_code ec;
  fs::path dir = fs::weakly_canonical(BackupDir(run), ec);
  if (fs::path(backup).parent_path() != dir)
    return luaL_error(L, "guardian.sqlite.restore: %s is not one of this check's backups",
                      backup.c_str());
  run->CheckCanWait(L, "guardian.sqlite.restore");
  if (run->RecordAction(L, "guardian.sqlite.restore", 2))
    return run->AwaitNothing(L, "guardian.sqlite.restore", [](lua_State* L) {
      lua_pushboolean(L, 1);
      return 1;
    });
  return AwaitPool<Outcome>(
      L, "guardian.sqlite.restore",
      [backup, path](Outcome* o) {
        DbCheck c = CheckDatabase(backup, true);
        if (!c.ok) {
          o->status =
              Status::Corruption("backup " + backup + " fails integrity_check: " + c.Summary());
          return;
        }
        std::error_code ec;
        std::string tmp = path + ".restore";
        fs::copy_file(backup, tmp, fs::copy_options::overwrite_existing, ec);
        if (!ec) fs::rename(tmp, path, ec);
        if (ec) {
          fs::remove(tmp, ec);
          o->status = Status::IOError("cannot restore " + path + ": " + ec.message());
          return;
        }
        fs::remove(path + "-wal", ec);
        fs::remove(path + "-shm", ec);
      },
      [](lua_State* L, const Outcome& o) {
        if (!o.status.ok()) {
          lua_pushnil(L);
          lua_pushstring(L, o.status.message().c_str());
          return 2;
        }
        lua_pushboolean(L, 1);
        return 1;
      });
}

void Install(lua_State* L) {
  static const luaL_Reg fns[] = {{"check", Check},     {"backups", Backups},
                                 {"backup", Backup},   {"checkpoint", Checkpoint},
                                 {"restore", Restore}, {nullptr, nullptr}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "sqlite");
}

}  // namespace

GUARDIAN_HOST_MODULE(sqlite, "sqlite", Install);

}  // namespace guardian
