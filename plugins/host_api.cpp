#include "plugins/host_api.h"

namespace guardian {

std::vector<HostModule>& HostModules::All() {
  static std::vector<HostModule> modules;
  return modules;
}

bool HostModules::Add(HostModule m) {
  All().push_back(m);
  return true;
}

std::vector<std::string> CheckStringArray(lua_State* L, int idx, const char* what) {
  luaL_checktype(L, idx, LUA_TTABLE);
  std::vector<std::string> out;
  lua_Integer n = luaL_len(L, idx);
  for (lua_Integer i = 1; i <= n; ++i) {
    lua_geti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s[%d] must be a string", what, static_cast<int>(i));
    size_t len = 0;
    const char* s = lua_tolstring(L, -1, &len);
    out.emplace_back(s, len);
    lua_pop(L, 1);
  }
  return out;
}

void PushStringMap(lua_State* L, const std::map<std::string, std::string>& m) {
  lua_createtable(L, 0, static_cast<int>(m.size()));
  for (const auto& [k, v] : m) {
    lua_pushlstring(L, v.data(), v.size());
    lua_setfield(L, -2, k.c_str());
  }
}

}  // namespace guardian
