#include "plugins/playbook_library.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "daemon/clock.h"
#include "daemon/file_util.h"
#include "daemon/modes.h"
#include "plugins/sandbox.h"

namespace guardian {
namespace fs = std::filesystem;

namespace {

const char* const kPhases[] = {"backup", "remediate", "verify", "rollback"};
const std::set<std::string> kKnownFields = {"name",       "mode",       "backup",  "remediate",
                                            "verify",     "rollback",   "timeout", "retries",
                                            "disruptive", "description"};

// "file:LINE:" from a Lua message that names the chunk, so errors carry the line.
// Lua shortens chunk names past 60 bytes, so chunks are named by file name (ChunkName) and
// messages get the full path back here: `name.lua:12: msg` -> `/full/path/name.lua:12: msg`.
std::string WithFile(const std::string& path, const std::string& lua_msg) {
  std::string name = fs::path(path).filename().string() + ":";
  if (lua_msg.rfind(name, 0) == 0) return path + ":" + lua_msg.substr(name.size());
  if (lua_msg.rfind(path + ":", 0) == 0) return lua_msg;
  return path + ": " + lua_msg;
}

// Pushes t[name] without metamethods, for the table at index 1.
void RawField(lua_State* L, const char* name) {
  lua_pushstring(L, name);
  lua_rawget(L, 1);
}

// Reads the `mode` field on top of the stack: one mode id, or an array of them (a playbook that
// serves several general checks, such as `exec`).
void ReadModes(lua_State* L, std::vector<std::string>* modes, std::vector<std::string>* errors) {
  const std::string bad = "field 'mode' must be a mode id or a list of them; modes: " + ModeList();
  if (lua_type(L, -1) == LUA_TSTRING) {
    if (!FindMode(lua_tostring(L, -1))) return errors->push_back(bad);
    modes->push_back(lua_tostring(L, -1));
    return;
  }
  if (lua_type(L, -1) != LUA_TTABLE) return errors->push_back(bad);
  lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, -1));
  for (lua_Integer i = 1; i <= n && i <= 64; ++i) {
    lua_rawgeti(L, -1, i);
    if (lua_type(L, -1) == LUA_TSTRING && FindMode(lua_tostring(L, -1))) {
      modes->push_back(lua_tostring(L, -1));
    } else {
      errors->push_back("field 'mode' item " + std::to_string(i) +
                        " is not a mode id; modes: " + ModeList());
    }
    lua_pop(L, 1);
  }
  if (modes->empty() && errors->empty()) errors->push_back(bad);
}

}  // namespace

bool PlaybookInfo::Serves(const std::string& mode) const {
  return std::find(modes.begin(), modes.end(), mode) != modes.end();
}

std::string PlaybookInfo::ModesText() const {
  std::string out;
  for (const auto& m : modes) out += (out.empty() ? "" : ", ") + m;
  return out;
}

Status PlaybookLibrary::RunChunk(Sandbox* sb, const std::string& source, const std::string& path,
                                 const PlaybookLimits& limits) {
  Status s = sb->Load(source, ChunkName(path));
  if (!s.ok()) return Status::InvalidArgument(WithFile(path, s.message()));
  // Top-level code gets a small budget: a second, and the per-phase instruction count.
  sb->Arm(limits.instructions, SystemClock::Get()->MonoMs() + 1000);
  s = sb->PCall(0, 1);
  sb->Disarm();
  if (!s.ok()) return Status::InvalidArgument(WithFile(path, s.message()));
  if (!lua_istable(sb->L(), -1)) {
    lua_pop(sb->L(), 1);
    return Status::InvalidArgument(path + ": a playbook must return a table");
  }
  return Status::OK();
}

std::string PlaybookLibrary::ChunkName(const std::string& path) {
  return "=" + fs::path(path).filename().string();
}

Status PlaybookLibrary::Inspect(const std::string& path, const PlaybookLimits& limits,
                                PlaybookInfo* out) {
  std::string source;
  Status read = ReadRegularFile(path, 1 << 20, &source);
  if (!read.ok()) return Status::NotFound(path + ": cannot read: " + read.message());

  // No host API while loading, as Redis loads functions: top-level code only builds the table.
  Sandbox sb(limits.memory_bytes);
  Status s = RunChunk(&sb, source, path, limits);
  if (!s.ok()) return s;
  PlaybookInfo info;
  info.path = path;
  info.source = std::move(source);
  std::vector<std::string> errors;
  // Reading the table allocates (field names); the chunk may have filled memory to the cap,
  // so read it in protected mode, and raw, so no metatable of the playbook's runs here.
  Status parsed = sb.Protected(
      [&](lua_State* L) {
        // Unknown fields are typos until proven otherwise.
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
          if (lua_type(L, -2) != LUA_TSTRING) {
            errors.push_back("playbook table has a non-string key");
          } else if (!kKnownFields.count(lua_tostring(L, -2))) {
            errors.push_back(std::string("unknown field '") + lua_tostring(L, -2) + "'");
          }
          lua_pop(L, 1);
        }
        RawField(L, "name");
        if (lua_type(L, -1) == LUA_TSTRING) {
          info.name = lua_tostring(L, -1);
          if (!std::regex_match(info.name, std::regex("[a-z0-9_-]+")))
            errors.push_back("field 'name' must match [a-z0-9_-]+");
        } else {
          errors.push_back("field 'name' must be a string");
        }
        lua_pop(L, 1);
        RawField(L, "mode");
        ReadModes(L, &info.modes, &errors);
        lua_pop(L, 1);
        for (const char* phase : kPhases) {
          RawField(L, phase);
          if (lua_isfunction(L, -1)) {
            info.phases.push_back(phase);
          } else if (!lua_isnil(L, -1)) {
            errors.push_back(std::string("field '") + phase + "' must be a function");
          }
          lua_pop(L, 1);
        }
        if (std::find(info.phases.begin(), info.phases.end(), "remediate") == info.phases.end()) {
          errors.push_back("field 'remediate' (a function) is required");
        }
        RawField(L, "timeout");
        if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
          info.timeout_ms = lua_tointeger(L, -1);
        } else if (!lua_isnil(L, -1)) {
          errors.push_back("field 'timeout' must be a positive integer (milliseconds)");
        }
        lua_pop(L, 1);
        RawField(L, "retries");
        if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0 && lua_tointeger(L, -1) <= 10) {
          info.retries = static_cast<int>(lua_tointeger(L, -1));
        } else if (!lua_isnil(L, -1)) {
          errors.push_back("field 'retries' must be an integer 0..10");
        }
        lua_pop(L, 1);
        RawField(L, "disruptive");
        if (lua_isboolean(L, -1)) {
          info.disruptive = lua_toboolean(L, -1);
        } else if (!lua_isnil(L, -1)) {
          errors.push_back("field 'disruptive' must be a boolean");
        }
        lua_pop(L, 1);
      },
      1);
  if (!parsed.ok()) return Status::InvalidArgument(path + ": " + parsed.message());
  if (!errors.empty()) {
    std::string msg;
    for (const auto& e : errors) msg += (msg.empty() ? "" : "\n") + path + ": " + e;
    return Status::InvalidArgument(msg);
  }
  *out = std::move(info);
  return Status::OK();
}

PlaybookLibrary::ScanResult PlaybookLibrary::InspectDirs(const std::vector<std::string>& dirs,
                                                         const PlaybookLimits& limits) {
  ScanResult out;
  for (const auto& dir : dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      out.errors.push_back(dir + ": playbook dir does not exist");
      continue;
    }
    std::vector<std::string> files;
    for (const auto& e : ListDir(dir, &ec)) {
      if (e.extension() == ".lua") files.push_back(e.string());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      out.seen_paths.push_back(f);
      PlaybookInfo info;
      Status s = Inspect(f, limits, &info);
      if (s.ok()) {
        out.loaded.push_back(std::move(info));
      } else {
        out.errors.push_back(s.message());
      }
    }
  }
  return out;
}

std::vector<std::string> PlaybookLibrary::Install(ScanResult scan) {
  std::vector<std::string> errors = std::move(scan.errors);
  for (auto& info : scan.loaded) {
    Status s = Add(std::move(info));
    if (!s.ok()) errors.push_back(s.message());
  }
  // Drop playbooks whose files are gone; a file that failed to load keeps its old version.
  std::set<std::string> seen(scan.seen_paths.begin(), scan.seen_paths.end());
  for (auto it = name_by_path_.begin(); it != name_by_path_.end();) {
    if (!seen.count(it->first)) {
      by_name_.erase(it->second);
      it = name_by_path_.erase(it);
    } else {
      ++it;
    }
  }
  return errors;
}

std::vector<std::string> PlaybookLibrary::Scan(const std::vector<std::string>& dirs) {
  return Install(InspectDirs(dirs, limits_));
}

Status PlaybookLibrary::ReloadFile(const std::string& path) {
  PlaybookInfo info;
  Status s = Inspect(path, limits_, &info);
  if (!s.ok()) return s;  // the previous version (if any) stays in use
  return Add(std::move(info));
}

Status PlaybookLibrary::Add(PlaybookInfo info) {
  const std::string path = info.path;
  auto clash = by_name_.find(info.name);
  if (clash != by_name_.end() && clash->second->path != path) {
    return Status::InvalidArgument(path + ": playbook name '" + info.name +
                                   "' is already used by " + clash->second->path);
  }
  auto old = name_by_path_.find(path);
  if (old != name_by_path_.end() && old->second != info.name) by_name_.erase(old->second);
  std::string name = info.name;  // `info` is moved from below
  name_by_path_[path] = name;
  by_name_[name] = std::make_shared<const PlaybookInfo>(std::move(info));
  return Status::OK();
}

std::shared_ptr<const PlaybookInfo> PlaybookLibrary::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::vector<std::string> PlaybookLibrary::Names() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : by_name_) out.push_back(name);
  return out;
}

}  // namespace guardian
