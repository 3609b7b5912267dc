// guardian.state: values a check keeps across incidents and restarts, and its kept versions.
#include <algorithm>
#include <filesystem>

#include "daemon/file_util.h"
#include "plugins/host_api.h"
#include "plugins/playbook_run.h"

namespace guardian {
namespace {
namespace fs = std::filesystem;

// guardian.state.get(key) -> string or nil
int Get(lua_State* L) {
  std::string key = luaL_checkstring(L, 1);
  std::string v = PlaybookRun::From(L)->services().get_value(key);
  if (v.empty()) {
    lua_pushnil(L);
  } else {
    lua_pushlstring(L, v.data(), v.size());
  }
  return 1;
}

// guardian.state.set(key, value): value is stored as a string; nil or "" deletes.
int Set(lua_State* L) {
  std::string key = luaL_checkstring(L, 1);
  if (key.empty() || key.size() > 128)
    return luaL_error(L, "guardian.state.set: key must be 1..128 bytes");
  std::string value;
  if (!lua_isnoneornil(L, 2)) {
    size_t len = 0;
    const char* s = luaL_tolstring(L, 2, &len);
    value.assign(s, len);
  }
  // Each value is a store write; keep them small so a playbook cannot flood the journal queue.
  if (value.size() > 4096) return luaL_error(L, "guardian.state.set: value larger than 4096 bytes");
  PlaybookRun* run = PlaybookRun::From(L);
  // In a dry run set_value keeps the value in the run only (see PlaybookRun's constructor):
  // the check's stored values stay as they are, and later gets in the run see the new one.
  run->RecordAction(L, "guardian.state.set", 2, "kept in this dry run only");
  Status s = run->services().set_value(key, value);
  if (!s.ok()) return luaL_error(L, "guardian.state.set: %s", s.message().c_str());
  return 0;
}

// guardian.state.versions() -> { path, ... } newest first: the last-known-good copies Guardian
// took of the check's file while it was valid.
int Versions(lua_State* L) {
  PlaybookRun* run = PlaybookRun::From(L);
  fs::path dir = fs::path(run->check_state_dir()) / "versions";
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : ListDir(dir, &ec)) {
    // Only finished copies: a `.tmp` left by a crash between write and rename may be cut short.
    if (e.extension() == ".yaml" && fs::is_regular_file(e, ec)) files.push_back(e.string());
  }
  // Names start with a zero-padded timestamp, so name order is age order.
  std::sort(files.rbegin(), files.rend());
  lua_createtable(L, static_cast<int>(files.size()), 0);
  for (size_t i = 0; i < files.size(); ++i) {
    lua_pushstring(L, files[i].c_str());
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
  return 1;
}

void Install(lua_State* L) {
  static const luaL_Reg fns[] = {
      {"get", Get}, {"set", Set}, {"versions", Versions}, {nullptr, nullptr}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "state");
}

}  // namespace

GUARDIAN_HOST_MODULE(state, "state", Install);

}  // namespace guardian
