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

void PushJson(lua_State* L, const nlohmann::json& j) {
  luaL_checkstack(L, 3, "json too deep");
  switch (j.type()) {
    case nlohmann::json::value_t::object:
      lua_createtable(L, 0, static_cast<int>(j.size()));
      for (const auto& [k, v] : j.items()) {
        if (v.is_null()) continue;
        PushJson(L, v);
        lua_setfield(L, -2, k.c_str());
      }
      break;
    case nlohmann::json::value_t::array: {
      lua_createtable(L, static_cast<int>(j.size()), 0);
      lua_Integer i = 1;
      for (const auto& v : j) {
        PushJson(L, v);
        lua_rawseti(L, -2, i++);
      }
      break;
    }
    case nlohmann::json::value_t::string: {
      const auto& s = j.get_ref<const std::string&>();
      lua_pushlstring(L, s.data(), s.size());
      break;
    }
    case nlohmann::json::value_t::boolean:
      lua_pushboolean(L, j.get<bool>());
      break;
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      lua_pushinteger(L, j.get<lua_Integer>());
      break;
    case nlohmann::json::value_t::number_float:
      lua_pushnumber(L, j.get<double>());
      break;
    default:
      lua_pushnil(L);
  }
}

namespace {

nlohmann::json ToJson(lua_State* L, int idx, const char* what, int depth) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      return nullptr;
    case LUA_TBOOLEAN:
      return lua_toboolean(L, idx) != 0;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) return lua_tointeger(L, idx);
      return lua_tonumber(L, idx);
    case LUA_TSTRING: {
      size_t len = 0;
      const char* s = lua_tolstring(L, idx, &len);
      return std::string(s, len);
    }
    case LUA_TTABLE:
      break;
    default:
      luaL_error(L, "%s: a %s cannot be written as JSON", what, luaL_typename(L, idx));
  }
  // Also stops cycles: a table that contains itself nests forever.
  if (depth >= 32) luaL_error(L, "%s: nested deeper than 32 levels", what);
  luaL_checkstack(L, 4, "json too deep");
  lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, idx));
  bool array = true;
  size_t keys = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    ++keys;
    if (lua_type(L, -2) == LUA_TSTRING) {
      array = false;
    } else if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n) {
      lua_pop(L, 2);
      luaL_error(L, "%s: table keys must be all strings or 1..n", what);
    }
    lua_pop(L, 1);
  }
  if (array) {
    nlohmann::json out = nlohmann::json::array();
    for (lua_Integer i = 1; i <= n; ++i) {
      lua_rawgeti(L, idx, i);
      out.push_back(ToJson(L, -1, what, depth + 1));
      lua_pop(L, 1);
    }
    return out;
  }
  if (keys != 0 && n != 0) luaL_error(L, "%s: table mixes string keys and 1..n", what);
  nlohmann::json out = nlohmann::json::object();
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    std::string key = lua_tostring(L, -2);  // a string: checked above
    out[key] = ToJson(L, -1, what, depth + 1);
    lua_pop(L, 1);
  }
  return out;
}

}  // namespace

nlohmann::json LuaToJson(lua_State* L, int idx, const char* what) {
  return ToJson(L, idx, what, 0);
}

}  // namespace guardian
