// guardian.disk: what disk_full's playbook needs to free space, all on the thread pool and
// within the check's declared paths (as guardian.fs): how full a filesystem is, a folder's
// files with sizes and ages, gzip in place, and a move that may cross filesystems (to a reserve
// area, and back on rollback).
#include "daemon/disk_usage.h"
#include "daemon/work.h"
#include "plugins/host_api.h"
#include "plugins/playbook_run.h"

namespace guardian {
namespace {

// Functions that change files never follow a final symlink: a link planted in a log folder
// must not lead a gzip or a move to a file elsewhere. The ones that only look (usage, files)
// follow it, and its target must be inside the roots too: statvfs and opendir would follow it
// anyway, so checking the link alone let a link to any folder be listed.
std::string Resolve(lua_State* L, int idx, bool write, bool follow) {
  std::string path = luaL_checkstring(L, idx);
  std::string resolved;
  Status s = PlaybookRun::From(L)->ResolvePath(path, write, &resolved, follow);
  if (!s.ok()) luaL_error(L, "guardian.disk: %s", s.message().c_str());
  return resolved;
}

// Runs `work` on the pool; resumes with the table it built, or nil, message.
int AwaitJson(lua_State* L, const char* what, std::function<Status(nlohmann::json*)> work) {
  PlaybookRun* run = PlaybookRun::From(L);
  return run->Await(L, what, [run, work](PlaybookRun::Resume resume) {
    auto status = std::make_shared<Status>();
    auto doc = std::make_shared<nlohmann::json>();
    QueueWork(
        run->loop(), [work, status, doc] { *status = work(doc.get()); },
        [resume, status, doc] {
          resume([status, doc](lua_State* L) {
            if (!status->ok()) {
              lua_pushnil(L);
              lua_pushstring(L, status->message().c_str());
              return 2;
            }
            PushJson(L, *doc);
            return 1;
          });
        });
    return std::function<void()>();
  });
}

// guardian.disk.usage(path) -> {total_bytes, free_bytes, free_percent, total_inodes,
//   free_inodes, free_inodes_percent} or nil, message
int Usage(lua_State* L) {
  std::string p = Resolve(L, 1, false, true);
  return AwaitJson(L, "guardian.disk.usage", [p](nlohmann::json* out) {
    DiskUsage u;
    Status s = ReadDiskUsage(p, &u);
    if (!s.ok()) return s;
    *out = {{"total_bytes", u.total_bytes},     {"free_bytes", u.free_bytes},
            {"free_percent", u.free_percent()}, {"total_inodes", u.total_inodes},
            {"free_inodes", u.free_inodes},     {"free_inodes_percent", u.free_inodes_percent()}};
    return Status::OK();
  });
}

// guardian.disk.files(dir) -> {{name, path, size, mtime_ms, regular}, ...} oldest first
int Files(lua_State* L) {
  std::string dir = Resolve(L, 1, false, true);
  return AwaitJson(L, "guardian.disk.files", [dir](nlohmann::json* out) {
    std::vector<FileEntry> files;
    Status s = ListFiles(dir, &files);
    if (!s.ok()) return s;
    *out = nlohmann::json::array();
    for (const auto& f : files)
      out->push_back({{"name", f.name},
                      {"path", dir + "/" + f.name},
                      {"size", f.size},
                      {"mtime_ms", f.mtime_ms},
                      {"regular", f.regular}});
    return Status::OK();
  });
}

// guardian.disk.gzip(path) -> {path, bytes_before, bytes_after} or nil, message: path.gz
// written (fsynced, renamed into place), then path removed; on ENOSPC nothing changes.
int Gzip(lua_State* L) {
  std::string p = Resolve(L, 1, true, false);
  PlaybookRun* run = PlaybookRun::From(L);
  run->CheckCanWait(L, "guardian.disk.gzip");
  if (run->RecordAction(L, "guardian.disk.gzip", 1))
    return run->AwaitNothing(L, "guardian.disk.gzip", [](lua_State* L) {
      lua_newtable(L);
      return 1;
    });
  return AwaitJson(L, "guardian.disk.gzip", [p](nlohmann::json* out) {
    uint64_t before = 0, after = 0;
    Status s = GzipFile(p, &before, &after);
    if (!s.ok()) return s;
    *out = {{"path", p + ".gz"}, {"bytes_before", before}, {"bytes_after", after}};
    return Status::OK();
  });
}

// guardian.disk.move(from, to) -> true or nil, message: rename, or across filesystems a copy
// (fsynced) and then an unlink; an existing `to` is refused.
int Move(lua_State* L) {
  std::string from = Resolve(L, 1, true, false);
  std::string to = Resolve(L, 2, true, false);
  PlaybookRun* run = PlaybookRun::From(L);
  run->CheckCanWait(L, "guardian.disk.move");
  if (run->RecordAction(L, "guardian.disk.move", 2))
    return run->AwaitNothing(L, "guardian.disk.move", [](lua_State* L) {
      lua_pushboolean(L, 1);
      return 1;
    });
  return AwaitJson(L, "guardian.disk.move", [from, to](nlohmann::json* out) {
    Status s = MoveFile(from, to);
    if (s.ok()) *out = true;
    return s;
  });
}

void Install(lua_State* L) {
  static const luaL_Reg fns[] = {
      {"usage", Usage}, {"files", Files}, {"gzip", Gzip}, {"move", Move}, {nullptr, nullptr}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "disk");
}

}  // namespace

GUARDIAN_HOST_MODULE(disk, "disk", Install);

}  // namespace guardian
