#include "plugins/dry_run.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

namespace guardian {
namespace {

// Enough to recognise a path or a command; file contents are cut (the size is shown).
constexpr size_t kMaxString = 80;
constexpr size_t kStringHead = 60;
constexpr int kMaxEntries = 6;
constexpr int kMaxDepth = 2;

std::string Quote(const char* s, size_t len) {
  size_t shown = len;
  if (len > kMaxString) {
    shown = kStringHead;
    // Do not cut a UTF-8 sequence in half.
    while (shown > 0 && (static_cast<unsigned char>(s[shown]) & 0xC0) == 0x80) --shown;
  }
  std::string out = "\"";
  for (size_t i = 0; i < shown; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\%d", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  if (shown < len) return out + "...\" (" + std::to_string(len) + " bytes)";
  return out + "\"";
}

bool IsIdentifier(const char* s, size_t len) {
  if (len == 0 || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(
      s, s + len, [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

std::string Literal(lua_State* L, int idx, int depth);

std::string Key(lua_State* L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len = 0;
    const char* s = lua_tolstring(L, idx, &len);
    return IsIdentifier(s, len) ? std::string(s, len) : "[" + Quote(s, len) + "]";
  }
  return "[" + Literal(L, idx, kMaxDepth) + "]";
}

std::string Table(lua_State* L, int idx, int depth) {
  if (depth >= kMaxDepth || !lua_checkstack(L, 3)) return "{...}";
  std::vector<std::string> items;
  lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, idx));
  bool more = false;
  for (lua_Integer i = 1; i <= n; ++i) {
    if (static_cast<int>(items.size()) == kMaxEntries) {
      more = true;
      break;
    }
    lua_rawgeti(L, idx, i);
    items.push_back(Literal(L, -1, depth + 1));
    lua_pop(L, 1);
  }
  // Named fields (opts tables): sorted so the text does not depend on hash order.
  std::vector<std::string> fields;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    bool in_array = lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1 && lua_tointeger(L, -2) <= n;
    if (!in_array && fields.size() == 16) {
      more = true;
      lua_pop(L, 2);
      break;
    }
    if (!in_array) fields.push_back(Key(L, -2) + " = " + Literal(L, -1, depth + 1));
    lua_pop(L, 1);
  }
  std::sort(fields.begin(), fields.end());
  for (const auto& f : fields) {
    if (static_cast<int>(items.size()) == kMaxEntries) {
      more = true;
      break;
    }
    items.push_back(f);
  }
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  if (more) out += items.empty() ? "..." : ", ...";
  return out + "}";
}

std::string Literal(lua_State* L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TNONE:
      return "nil";
    case LUA_TBOOLEAN:
      return lua_toboolean(L, idx) ? "true" : "false";
    case LUA_TNUMBER: {
      if (lua_isinteger(L, idx)) return std::to_string(lua_tointeger(L, idx));
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.14g", static_cast<double>(lua_tonumber(L, idx)));
      return buf;
    }
    case LUA_TSTRING: {
      size_t len = 0;
      const char* s = lua_tolstring(L, idx, &len);
      return Quote(s, len);
    }
    case LUA_TTABLE:
      return Table(L, idx, depth);
    default:
      return luaL_typename(L, idx);
  }
}

}  // namespace

std::string FormatLuaArgs(lua_State* L, int first, int last) {
  std::string out;
  for (int i = first; i <= last; ++i) out += (i > first ? ", " : "") + Literal(L, i, 0);
  return out;
}

std::string DryRunText(const DryRunAction& a) {
  std::string out = a.call + "(" + a.args + ")";
  return a.note.empty() ? out : out + " -- " + a.note;
}

void to_json(nlohmann::json& j, const DryRunAction& a) {
  j = nlohmann::json{{"phase", a.phase}, {"call", a.call}, {"args", a.args}, {"note", a.note}};
}

nlohmann::json DryRunJson(const std::vector<DryRunAction>& actions) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& a : actions) j.push_back(a);
  return j;
}

}  // namespace guardian
