// guardian.fs: file access limited to the paths the check declares (see docs/playbook-api.md).
// Reads, writes and copies run on the thread pool and yield the phase; policy violations raise,
// I/O failures return nil, message. In a dry run the calls that change files are only recorded.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "daemon/file_util.h"
#include "daemon/work.h"
#include "daemon/yaml_check.h"
#include "plugins/host_api.h"
#include "plugins/playbook_run.h"

namespace guardian {
namespace {
namespace fs = std::filesystem;

constexpr size_t kMaxRead = 16 << 20;

// `follow` = act on a final symlink's target (reads); otherwise on the link itself.
std::string Resolve(lua_State* L, int idx, bool write, bool follow = true) {
  std::string path = luaL_checkstring(L, idx);
  std::string resolved;
  Status s = PlaybookRun::From(L)->ResolvePath(path, write, &resolved, follow);
  if (!s.ok()) luaL_error(L, "guardian.fs: %s", s.message().c_str());
  return resolved;
}

// Runs `work` on the pool; the phase resumes with the content (when `returns_content`) or
// true, or with nil, message.
int AwaitIo(lua_State* L, const char* what, std::function<Status(std::string*)> work,
            bool returns_content = false) {
  PlaybookRun* run = PlaybookRun::From(L);
  return run->Await(L, what, [run, work, returns_content](PlaybookRun::Resume resume) {
    auto status = std::make_shared<Status>();
    auto out = std::make_shared<std::string>();
    QueueWork(
        run->loop(), [work, status, out] { *status = work(out.get()); },
        [resume, status, out, returns_content] {
          resume([status, out, returns_content](lua_State* L) {
            if (!status->ok()) {
              lua_pushnil(L);
              lua_pushstring(L, status->message().c_str());
              return 2;
            }
            if (returns_content) {
              lua_pushlstring(L, out->data(), out->size());
            } else {
              lua_pushboolean(L, 1);
            }
            return 1;
          });
        });
    return std::function<void()>();  // pool work cannot be cancelled; its result is ignored
  });
}

int PushTrue(lua_State* L) {
  lua_pushboolean(L, 1);
  return 1;
}

// The dry-run gate of guardian.fs: an action is recorded, not done, and answers true as success
// does (after a yield when the real call waits). Empty outside a dry run: the caller acts.
std::optional<int> DryRun(lua_State* L, const char* call, int nargs, bool waits) {
  PlaybookRun* run = PlaybookRun::From(L);
  if (waits) run->CheckCanWait(L, call);  // before recording: such a call never happens
  if (!run->RecordAction(L, call, nargs)) return std::nullopt;
  return waits ? run->AwaitNothing(L, call, PushTrue) : PushTrue(L);
}

Status Errno(const std::string& what, const std::string& path) {
  return Status::IOError(what + " " + path + ": " + std::strerror(errno));
}

// Writes `data` to `path` atomically: temp file in the same folder, fsync, rename.
Status AtomicWrite(const std::string& path, const std::string& data, mode_t mode) {
  // mkstemp: a fresh name opened O_EXCL, so a link planted at a guessable temp name cannot
  // redirect the write outside the roots.
  std::string tmp = path + ".guardian-XXXXXX";
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return Errno("create temp for", path);
  if (::fchmod(fd, mode) != 0) {
    Status s = Errno("chmod", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  }
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status s = Errno("write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return s;
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    Status s = Errno("fsync", tmp);
    ::unlink(tmp.c_str());
    return s;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = Errno("rename", path);
    ::unlink(tmp.c_str());
    return s;
  }
  return Status::OK();
}

Status ReadAll(const std::string& path, std::string* out) {
  Status s = ReadRegularFile(path, kMaxRead, out);
  if (!s.ok())
    return Status(s.code() == Status::Code::kNotFound ? Status::NotFound(path + ": " + s.message())
                                                      : Status::IOError(path + ": " + s.message()));
  return s;
}

// guardian.fs.exists(path) -> bool
int Exists(lua_State* L) {
  std::string p = Resolve(L, 1, false, false);
  struct stat st;
  lua_pushboolean(L, ::lstat(p.c_str(), &st) == 0);
  return 1;
}

// guardian.fs.stat(path) -> { size, mtime_ms, mode, type = "file"|"dir"|"link"|"other" } or nil
int Stat(lua_State* L) {
  std::string p = Resolve(L, 1, false, false);
  struct stat st;
  if (::lstat(p.c_str(), &st) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, std::strerror(errno));
    return 2;
  }
  lua_newtable(L);
  lua_pushinteger(L, st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(
      L, static_cast<lua_Integer>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000);
  lua_setfield(L, -2, "mtime_ms");
  lua_pushinteger(L, st.st_mode & 07777);
  lua_setfield(L, -2, "mode");
  const char* type = S_ISREG(st.st_mode)   ? "file"
                     : S_ISDIR(st.st_mode) ? "dir"
                     : S_ISLNK(st.st_mode) ? "link"
                                           : "other";
  lua_pushstring(L, type);
  lua_setfield(L, -2, "type");
  return 1;
}

// guardian.fs.list(dir) -> { name, ... } sorted, or nil, message
int List(lua_State* L) {
  std::string p = Resolve(L, 1, false);
  std::error_code ec;
  std::vector<std::string> names;
  for (const auto& e : ListDir(p, &ec)) names.push_back(e.filename().string());
  if (ec) {
    lua_pushnil(L);
    lua_pushstring(L, ec.message().c_str());
    return 2;
  }
  std::sort(names.begin(), names.end());
  lua_createtable(L, static_cast<int>(names.size()), 0);
  for (size_t i = 0; i < names.size(); ++i) {
    lua_pushstring(L, names[i].c_str());
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
  return 1;
}

// guardian.fs.read(path) -> content, or nil, message (yields)
int Read(lua_State* L) {
  std::string p = Resolve(L, 1, false);
  return AwaitIo(
      L, "guardian.fs.read", [p](std::string* out) { return ReadAll(p, out); }, true);
}

// guardian.fs.write(path, content) -> true, or nil, message (atomic; yields)
int Write(lua_State* L) {
  std::string p = Resolve(L, 1, true, false);
  size_t len = 0;
  const char* data = luaL_checklstring(L, 2, &len);
  if (auto n = DryRun(L, "guardian.fs.write", 2, true)) return *n;
  std::string content(data, len);
  return AwaitIo(L, "guardian.fs.write",
                 [p, content](std::string*) { return AtomicWrite(p, content, 0644); });
}

// guardian.fs.copy(src, dst) -> true, or nil, message (atomic at dst, keeps mode; yields)
int Copy(lua_State* L) {
  std::string src = Resolve(L, 1, false);
  std::string dst = Resolve(L, 2, true, false);
  if (auto n = DryRun(L, "guardian.fs.copy", 2, true)) return *n;
  return AwaitIo(L, "guardian.fs.copy", [src, dst](std::string*) {
    std::string data;
    Status s = ReadAll(src, &data);
    if (!s.ok()) return s;
    struct stat st;
    mode_t mode = ::stat(src.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;
    return AtomicWrite(dst, data, mode);
  });
}

// guardian.fs.move(src, dst) -> true, or nil, message (rename; both must be writable)
int Move(lua_State* L) {
  std::string src = Resolve(L, 1, true, false);
  std::string dst = Resolve(L, 2, true, false);
  if (auto n = DryRun(L, "guardian.fs.move", 2, false)) return *n;
  if (::rename(src.c_str(), dst.c_str()) != 0) {
    lua_pushnil(L);
    lua_pushstring(
        L, (std::string("move ") + src + " -> " + dst + ": " + std::strerror(errno)).c_str());
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

// guardian.fs.remove(path) -> true, or nil, message (a file or an empty dir)
int Remove(lua_State* L) {
  std::string p = Resolve(L, 1, true, false);
  if (auto n = DryRun(L, "guardian.fs.remove", 1, false)) return *n;
  if (::remove(p.c_str()) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, (std::string("remove ") + p + ": " + std::strerror(errno)).c_str());
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

// guardian.fs.mkdir(path) -> true, or nil, message (with parents)
int Mkdir(lua_State* L) {
  std::string p = Resolve(L, 1, true);
  if (auto n = DryRun(L, "guardian.fs.mkdir", 1, false)) return *n;
  std::error_code ec;
  fs::create_directories(p, ec);
  if (ec) {
    lua_pushnil(L);
    lua_pushstring(L, ec.message().c_str());
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

// guardian.fs.check_yaml(path [, required_keys]) -> true, or nil, why (yields)
// Judges a file as missing_config does: present, non-empty, parsable, a mapping, keys present.
int CheckYaml(lua_State* L) {
  std::string p = Resolve(L, 1, false);
  std::vector<std::string> keys;
  if (!lua_isnoneornil(L, 2)) keys = CheckStringArray(L, 2, "required_keys");
  return AwaitIo(L, "guardian.fs.check_yaml",
                 [p, keys](std::string*) { return CheckYamlFile(p, keys); });
}

void Install(lua_State* L) {
  static const luaL_Reg fns[] = {{"exists", Exists}, {"stat", Stat},
                                 {"list", List},     {"read", Read},
                                 {"write", Write},   {"copy", Copy},
                                 {"move", Move},     {"remove", Remove},
                                 {"mkdir", Mkdir},   {"check_yaml", CheckYaml},
                                 {nullptr, nullptr}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "fs");
}

}  // namespace

GUARDIAN_HOST_MODULE(fs, "fs", Install);

}  // namespace guardian
