#include "plugins/sandbox.h"

#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "plugins/lua_patterns.h"

namespace guardian {
namespace {

constexpr int kHookEvery = 1000;  // instructions between two budget checks
// Memory a script allocates costs budget too: one instruction per kBytesPerInstruction, charged
// every kAllocChargeEvery bytes. Without it a loop of few instructions that each build a
// multi-megabyte string (s .. s, string.rep) kept the loop busy until the phase deadline.
constexpr int64_t kBytesPerInstruction = 16;
constexpr int64_t kAllocChargeEvery = 64 << 10;
// What one element costs a C loop over a table (or string) that has a metatable: each read may
// be a metamethod call, and one written in C (rawlen, table.concat) runs no instructions.
constexpr int64_t kMetaElementCost = 32;
// What a caught error costs: Lua (built as C++) raises errors as exceptions, and throwing and
// catching one takes some microseconds, about a thousand instructions' time. Uncharged,
// `while true do pcall(error, "x") end` held the loop for 13 s on its budget.
constexpr int64_t kCaughtErrorCost = 1000;
// The hook also counts the CPU time since it last ran, as one instruction per
// kNsPerInstruction: an instruction takes 5-10 ns here (some 50 in a sanitizer build), so
// this only shows when instructions are slow. Some do work in proportion to a long string
// without allocating (a == b, utf8.len(s) on megabytes); counted as one each, 1000 of them
// held the loop for a second and a loop of them until the phase deadline.
constexpr int64_t kNsPerInstruction = 100;
constexpr int64_t kSlowStretchNs = 1'000'000;  // 1000 instructions in more than 1 ms

// Registry key (by address) of the weak table that maps each real table to its read-only proxy,
// so a table reached twice gives the same proxy (and `a.b == a.b` holds).
const char kProxyCacheKey = 0;

// CPU time of this thread: what the phase computes, not the time it waits or is preempted.
int64_t ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int64_t MonoNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int64_t MonoNowMs() { return MonoNowNs() / 1'000'000; }

int64_t ClampCount(lua_Unsigned n) {
  constexpr auto kMax = static_cast<lua_Unsigned>(std::numeric_limits<int64_t>::max());
  return n >= kMax ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(n);
}

// `n` elements at `each` apiece, saturating.
int64_t Scaled(int64_t n, int64_t each) {
  return n > std::numeric_limits<int64_t>::max() / each ? std::numeric_limits<int64_t>::max()
                                                        : n * each;
}

// The cost of the elements first..last (none when last < first), each costing `each`.
int64_t RangeCost(lua_Integer first, lua_Integer last, int64_t each) {
  if (last < first) return 0;
  int64_t n = ClampCount(static_cast<lua_Unsigned>(last) - static_cast<lua_Unsigned>(first));
  if (n < std::numeric_limits<int64_t>::max()) ++n;
  return Scaled(n, each);
}

// Calls upvalue 1 (the stock library function) with this call's arguments.
int CallOriginal(lua_State* L) {
  const int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

}  // namespace

// The C functions of the sandbox. None of them lets a C++ exception escape into Lua: they use
// only the Lua API and C functions, and report errors with luaL_error.
struct SandboxLib {
  static Sandbox* From(lua_State* L) {
    // Every thread's extra space is a copy of the main thread's, which holds the owner.
    Sandbox* self = nullptr;
    std::memcpy(&self, lua_getextraspace(L), sizeof self);
    return self;
  }

  // True while an armed budget has tripped: errors raised now come from the hook, with hooks
  // off, so no script code may run on their way out.
  static bool Tripped(const Sandbox* self) { return self->armed_ && self->trip_; }

  static void Trip(Sandbox* self, const char* message) {
    self->trip_ = true;
    std::snprintf(self->trip_message_, sizeof self->trip_message_, "%s", message);
    try {
      self->tripped_ = self->trip_message_;  // capacity reserved, so this does not allocate
    } catch (...) {
    }
  }

  // Takes `n` units from the instruction budget and checks the deadline; trips (without
  // raising) when either is spent. `doing` says what spent it, for the message.
  static void Spend(Sandbox* self, int64_t n, const char* doing) {
    if (n >= self->instructions_left_) {
      self->instructions_left_ = 0;
      char message[sizeof self->trip_message_];
      std::snprintf(message, sizeof message, "instruction budget exceeded (%lld)%s%s",
                    static_cast<long long>(self->max_instructions_), doing[0] ? " " : "", doing);
      Trip(self, message);
    } else {
      self->instructions_left_ -= n;
      if (self->deadline_mono_ms_ != 0 && MonoNowMs() >= self->deadline_mono_ms_) {
        char message[sizeof self->trip_message_];
        std::snprintf(message, sizeof message, "phase deadline exceeded%s%s", doing[0] ? " " : "",
                      doing);
        Trip(self, message);
      }
    }
  }

  // Spends `n` units of the instruction budget and checks the deadline. Once tripped it re-arms
  // the hook on this thread to fire on every instruction, so a `pcall` that catches the error
  // is interrupted again at its next instruction, and raises (position taken at `level`).
  static void Charge(lua_State* L, int64_t n, int level, const char* doing = "") {
    Sandbox* self = From(L);
    if (!self->armed_) return;
    if (!self->trip_) Spend(self, n, doing);
    if (!self->trip_) return;
    lua_sethook(L, &Sandbox::Hook, LUA_MASKCOUNT, 1);
    luaL_where(L, level);
    lua_pushstring(L, self->trip_message_);
    lua_concat(L, 2);
    lua_error(L);
  }

  // The steps of the bounded pattern functions (lua_patterns.h), charged as instructions.
  static void ChargePattern(lua_State* L, int64_t steps, const char* function) {
    char doing[64];
    std::snprintf(doing, sizeof doing, "matching a pattern in %s", function);
    Charge(L, steps, 1, doing);
  }

  // Charges what the script allocated since the last charge. The allocator cannot raise, so
  // a trip here makes the next instruction of the running code raise instead (the hook).
  static void ChargeAllocation(Sandbox* self) {
    const int64_t n = self->alloc_uncharged_ / kBytesPerInstruction;
    self->alloc_uncharged_ %= kBytesPerInstruction;
    Spend(self, n, "allocating memory");
    if (!self->trip_) return;
    lua_sethook(self->L_, &Sandbox::Hook, LUA_MASKCOUNT, 1);
    if (self->armed_thread_ != nullptr) {
      lua_sethook(self->armed_thread_, &Sandbox::Hook, LUA_MASKCOUNT, 1);
    }
  }

  // A memory error (on top) reached a pcall or xpcall: it ends the run like a budget trip,
  // raised again now and at every instruction after, so catching it cannot keep a script
  // going. (Lua's own allocations collect garbage before they fail; lauxlib's buffers do not,
  // so near the cap one can fail where a collection would have made room. Telling that apart
  // here is not possible: by now the unwinding has freed the script's own data too.)
  static void CheckMemoryError(lua_State* L, int status) {
    Sandbox* self = From(L);
    if (!self->armed_ || status != LUA_ERRMEM) return;
    if (!self->trip_) {
      char message[sizeof self->trip_message_];
      std::snprintf(message, sizeof message, "memory cap exceeded (%lld bytes)",
                    static_cast<long long>(self->limit_));
      Trip(self, message);
    }
    lua_sethook(L, &Sandbox::Hook, LUA_MASKCOUNT, 1);
    lua_error(L);
  }

  // What one element of the value at `idx` costs a C loop (see kMetaElementCost).
  static int64_t ElementCost(lua_State* L, int idx) {
    if (!lua_getmetatable(L, idx)) return 1;
    lua_pop(L, 1);
    return kMetaElementCost;
  }

  // --- read-only proxies ---------------------------------------------------------------------

  // Pushes "parent.key" (or "parent[?]" for a non-string key) for error messages.
  static const char* PushChildName(lua_State* L, int parent_name, int key) {
    if (lua_type(L, key) == LUA_TSTRING) {
      return lua_pushfstring(L, "%s.%s", lua_tostring(L, parent_name), lua_tostring(L, key));
    }
    return lua_pushfstring(L, "%s[?]", lua_tostring(L, parent_name));
  }

  // Upvalues: real table, name. Tables found inside are handed out as proxies too.
  static int ProxyIndex(lua_State* L) {
    lua_settop(L, 2);
    lua_pushvalue(L, 2);
    const int type = lua_rawget(L, lua_upvalueindex(1));
    if (type == LUA_TNIL) {
      // Only names raise: an integer miss is how ipairs finds the end of a list.
      if (lua_type(L, 2) == LUA_TSTRING) {
        return luaL_error(L, "'%s.%s' is not available in the playbook sandbox",
                          lua_tostring(L, lua_upvalueindex(2)), lua_tostring(L, 2));
      }
      return 1;
    }
    if (type == LUA_TTABLE) {
      PushChildName(L, lua_upvalueindex(2), 2);
      PushProxy(L, 3, lua_tostring(L, -1));
    }
    return 1;
  }

  static int ProxyNewIndex(lua_State* L) {
    return luaL_error(L, "'%s' is read-only in the playbook sandbox",
                      lua_tostring(L, lua_upvalueindex(1)));
  }

  static int ProxyLen(lua_State* L) {
    lua_pushinteger(L, static_cast<lua_Integer>(lua_rawlen(L, lua_upvalueindex(1))));
    return 1;
  }

  // The iterator of `pairs(proxy)`. Its state argument is the proxy, never the real table.
  static int ProxyNext(lua_State* L) {
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1)) == 0) {
      lua_pushnil(L);
      return 1;
    }
    if (lua_type(L, -1) == LUA_TTABLE) {
      PushChildName(L, lua_upvalueindex(2), 2);
      PushProxy(L, 3, lua_tostring(L, -1));
      lua_replace(L, 3);
      lua_settop(L, 3);
    }
    return 2;
  }

  static int ProxyPairs(lua_State* L) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushcclosure(L, ProxyNext, 2);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
  }

  // Pushes the read-only proxy of the table at `idx`: an empty table whose protected metatable
  // reads from the real one and refuses writes. The real table is only ever an upvalue.
  static void PushProxy(lua_State* L, int idx, const char* name) {
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 6, "building a read-only table");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &kProxyCacheKey);
    const int cache = lua_gettop(L);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, cache) != LUA_TNIL) {
      lua_remove(L, cache);
      return;
    }
    lua_pop(L, 1);

    lua_createtable(L, 0, 0);
    const int proxy = lua_gettop(L);
    lua_createtable(L, 0, 5);
    lua_pushvalue(L, idx);
    lua_pushstring(L, name);
    lua_pushcclosure(L, ProxyIndex, 2);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, name);
    lua_pushcclosure(L, ProxyNewIndex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, idx);
    lua_pushcclosure(L, ProxyLen, 1);
    lua_setfield(L, -2, "__len");
    lua_pushvalue(L, idx);
    lua_pushstring(L, name);
    lua_pushcclosure(L, ProxyPairs, 2);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);  // getmetatable(proxy) == false: the real table stays out of reach
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, proxy);

    lua_pushvalue(L, idx);
    lua_pushvalue(L, proxy);
    lua_rawset(L, cache);
    lua_pushvalue(L, proxy);
    lua_pushvalue(L, proxy);  // a proxy wrapped again is itself
    lua_rawset(L, cache);
    lua_remove(L, cache);
  }

  // --- the environment -----------------------------------------------------------------------

  static int EnvIndex(lua_State* L) {
    if (lua_type(L, 2) == LUA_TSTRING) {
      return luaL_error(L, "undefined global '%s'", lua_tostring(L, 2));
    }
    return 0;
  }

  // print goes nowhere: playbooks log through the host API, and stdout is not theirs.
  static int Print(lua_State*) { return 0; }

  // setmetatable without finalizers: Lua runs __gc with hooks off, so a looping finalizer
  // could never be interrupted. __gc only counts if present when the metatable is set (any
  // non-nil value, even false, marks the object), so checking here is enough.
  static int SetMetatable(lua_State* L) {
    const int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE) {
      lua_pushliteral(L, "__gc");
      if (lua_rawget(L, 2) != LUA_TNIL) {
        return luaL_error(L, "'__gc' metamethods are not available in the playbook sandbox");
      }
      lua_pop(L, 1);
    }
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL) {
      return luaL_error(L, "cannot change a protected metatable");
    }
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
  }

  // The end of pcall and xpcall (also their continuation after a wait): results, or false and
  // the error, which must not be a memory error the cap stands by (CheckMemoryError).
  static int PcallDone(lua_State* L, int status, lua_KContext extra) {
    if (status != LUA_OK && status != LUA_YIELD) {
      CheckMemoryError(L, status);
      Charge(L, kCaughtErrorCost, 1);
      lua_pushboolean(L, 0);
      lua_pushvalue(L, -2);
      return 2;
    }
    return lua_gettop(L) - static_cast<int>(extra);
  }

  // pcall that does not let a memory error be caught (CheckMemoryError); with a continuation,
  // so playbooks may wait inside it.
  static int Pcall(lua_State* L) {
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    const int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, PcallDone);
    return PcallDone(L, status, 0);
  }

  // xpcall whose message handler is skipped once the budget tripped: an error raised from the
  // hook runs the handler with hooks off, so a looping handler would never stop.
  static int XpcallHandler(lua_State* L) {
    if (Tripped(From(L))) return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
  }

  // Same stack dance as the stock xpcall, with a continuation so playbooks may wait inside it;
  // a memory error is not caught (CheckMemoryError).
  static int Xpcall(lua_State* L) {
    const int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, XpcallHandler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);
    const int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, PcallDone);
    return PcallDone(L, status, 2);
  }

  // string.rep as in lstrlib, except that an empty string with an empty separator returns at
  // once: the stock loop would spin `n` times in C (where the hook never fires) to build "".
  // Anything longer is bounded by the memory cap.
  static int StringRep(lua_State* L) {
    size_t len = 0;
    size_t sep_len = 0;
    const char* s = luaL_checklstring(L, 1, &len);
    const lua_Integer n = luaL_checkinteger(L, 2);
    const char* sep = luaL_optlstring(L, 3, "", &sep_len);
    constexpr auto kMaxSize = static_cast<size_t>(std::numeric_limits<int>::max());
    if (n <= 0 || len + sep_len == 0) {
      lua_pushliteral(L, "");
      return 1;
    }
    if (len + sep_len < len || len + sep_len > kMaxSize / static_cast<size_t>(n)) {
      return luaL_error(L, "resulting string too large");
    }
    const size_t total = static_cast<size_t>(n) * len + static_cast<size_t>(n - 1) * sep_len;
    luaL_Buffer b;
    char* p = luaL_buffinitsize(L, &b, total);
    for (lua_Integer i = 0; i < n; ++i) {
      std::memcpy(p, s, len);
      p += len;
      if (i + 1 < n && sep_len > 0) {
        std::memcpy(p, sep, sep_len);
        p += sep_len;
      }
    }
    luaL_pushresultsize(&b, total);
    return 1;
  }

  // table.insert/remove/move/concat/unpack/sort loop in C over a count the script controls (a
  // __len metamethod can claim 2^62 elements, an __index written in C makes them up), where the
  // count hook never fires: charge the loop up front. The checks mirror the stock functions',
  // so their own errors (wrong types, "too many elements") come first.
  static int TableInsert(lua_State* L) {
    if (lua_gettop(L) == 3 && lua_type(L, 1) == LUA_TTABLE) {
      const auto end = static_cast<lua_Unsigned>(luaL_len(L, 1)) + 1u;
      int is_num = 0;
      const auto pos = static_cast<lua_Unsigned>(lua_tointegerx(L, 2, &is_num));
      if (is_num && pos - 1u < end) Charge(L, Scaled(ClampCount(end - pos), ElementCost(L, 1)), 1);
    }
    return CallOriginal(L);
  }

  static int TableRemove(lua_State* L) {
    if (lua_type(L, 1) == LUA_TTABLE) {
      const lua_Integer size = luaL_len(L, 1);
      int is_num = 1;
      const lua_Integer pos = lua_isnoneornil(L, 2) ? size : lua_tointegerx(L, 2, &is_num);
      if (is_num && pos < size &&
          static_cast<lua_Unsigned>(pos) - 1u <= static_cast<lua_Unsigned>(size)) {
        const auto n = static_cast<lua_Unsigned>(size) - static_cast<lua_Unsigned>(pos);
        Charge(L, Scaled(ClampCount(n), ElementCost(L, 1)), 1);
      }
    }
    return CallOriginal(L);
  }

  static int TableMove(lua_State* L) {
    int f_num = 0;
    int e_num = 0;
    const lua_Integer f = lua_tointegerx(L, 2, &f_num);
    const lua_Integer e = lua_tointegerx(L, 3, &e_num);
    // Same validity test as the stock function, so its "too many elements" error comes first.
    if (f_num && e_num && e >= f && (f > 0 || e < LUA_MAXINTEGER + f)) {
      const int dest = lua_isnoneornil(L, 5) ? 1 : 5;
      Charge(L, RangeCost(f, e, std::max(ElementCost(L, 1), ElementCost(L, dest))), 1);
    }
    return CallOriginal(L);
  }

  // Charges the elements i..j of the list at 1, i and j being arguments `at` and `at` + 1
  // (default 1 and #list), when they are integers.
  static void ChargeRange(lua_State* L, int at) {
    int i_num = 1;
    int j_num = 1;
    const lua_Integer i = lua_isnoneornil(L, at) ? 1 : lua_tointegerx(L, at, &i_num);
    const lua_Integer j =
        lua_isnoneornil(L, at + 1) ? luaL_len(L, 1) : lua_tointegerx(L, at + 1, &j_num);
    if (i_num && j_num) Charge(L, RangeCost(i, j, ElementCost(L, 1)), 1);
  }

  static int TableConcat(lua_State* L) {
    if (lua_type(L, 1) == LUA_TTABLE) ChargeRange(L, 3);
    return CallOriginal(L);
  }

  // Any value can be unpacked (a string's elements are all nil), up to the stack's limit.
  static int TableUnpack(lua_State* L) {
    const int type = lua_type(L, 1);
    if (!lua_isnoneornil(L, 3) || type == LUA_TTABLE || type == LUA_TSTRING) ChargeRange(L, 2);
    return CallOriginal(L);
  }

  // About n log2 n comparisons, each reading (and maybe writing) elements.
  static int TableSort(lua_State* L) {
    if (lua_type(L, 1) == LUA_TTABLE) {
      const lua_Integer n = luaL_len(L, 1);
      if (n > 1 && n < std::numeric_limits<int>::max()) {
        int log2 = 1;
        while (log2 < 62 && (lua_Integer{1} << log2) < n) ++log2;
        Charge(L, RangeCost(1, n, ElementCost(L, 1) * log2), 1);
      }
    }
    return CallOriginal(L);
  }

  // tonumber and utf8.len/offset/codepoint scan a string in C without allocating: on
  // megabytes each call takes milliseconds, so charge the scan up front (1 per 16 bytes).
  static int ScansString(lua_State* L) {
    if (lua_type(L, 1) == LUA_TSTRING) {
      Charge(L, static_cast<int64_t>(lua_rawlen(L, 1) / 16), 1);
    }
    return CallOriginal(L);
  }

  static int PcallTraceback(lua_State* L) {
    const char* message = nullptr;
    if (lua_isstring(L, 1)) {
      message = lua_tostring(L, 1);
    } else if (!Tripped(From(L)) && luaL_callmeta(L, 1, "__tostring") &&
               lua_type(L, -1) == LUA_TSTRING) {
      message = lua_tostring(L, -1);
    } else {
      message = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, message, 1);
    return 1;
  }

  static void CopyField(lua_State* L, int from, int to, const char* name) {
    lua_getfield(L, from, name);
    lua_setfield(L, to, name);
  }

  // Replaces t[name] with a C closure over the stock function.
  static void Wrap(lua_State* L, int t, const char* name, lua_CFunction wrapper) {
    lua_getfield(L, t, name);
    lua_pushcclosure(L, wrapper, 1);
    lua_setfield(L, t, name);
  }

  // Runs protected from the constructor: opens the libraries and builds the environment.
  static int Open(lua_State* L) {
    Sandbox* self = From(L);
    luaL_checkstack(L, 20, "opening the sandbox");

    // Everything opened here lands in the registry (and base in the main globals table),
    // which no sandboxed chunk can reach; chunks see only the environment built below.
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    lua_pop(L, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 0);
    const int string_lib = lua_gettop(L);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 0);
    const int table_lib = lua_gettop(L);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 0);
    const int math_lib = lua_gettop(L);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 0);
    const int utf8_lib = lua_gettop(L);
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    const int os_lib = lua_gettop(L);

    lua_createtable(L, 0, 0);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &kProxyCacheKey);

    // Strings index the real string table through their metatable (("").rep), so dump is
    // removed from it and rep and the pattern functions replaced in it, not just hidden behind
    // the proxy.
    lua_pushnil(L);
    lua_setfield(L, string_lib, "dump");
    lua_pushcfunction(L, StringRep);
    lua_setfield(L, string_lib, "rep");
    static const PatternCharge kChargePattern = &SandboxLib::ChargePattern;
    InstallBoundedPatterns(L, string_lib, &kChargePattern);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);  // getmetatable("") == false
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    // A copy of the table library, so the stock functions keep their names in error messages.
    lua_createtable(L, 0, 8);
    const int table_copy = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, table_lib) != 0) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, table_copy);
    }
    Wrap(L, table_copy, "insert", TableInsert);
    Wrap(L, table_copy, "remove", TableRemove);
    Wrap(L, table_copy, "move", TableMove);
    Wrap(L, table_copy, "concat", TableConcat);
    Wrap(L, table_copy, "unpack", TableUnpack);
    Wrap(L, table_copy, "sort", TableSort);

    lua_createtable(L, 0, 3);
    const int os_copy = lua_gettop(L);
    CopyField(L, os_lib, os_copy, "time");
    CopyField(L, os_lib, os_copy, "clock");
    CopyField(L, os_lib, os_copy, "date");

    lua_createtable(L, 0, 32);
    const int env = lua_gettop(L);
    static constexpr const char* kBase[] = {"assert", "error",    "ipairs",   "next",
                                            "pairs",  "select",   "tonumber", "tostring",
                                            "type",   "rawequal", "rawlen",   "getmetatable"};
    for (const char* name : kBase) {
      lua_getglobal(L, name);
      lua_setfield(L, env, name);
    }
    Wrap(L, env, "tonumber", ScansString);
    for (const char* name : {"len", "offset", "codepoint"}) Wrap(L, utf8_lib, name, ScansString);
    lua_pushcfunction(L, Pcall);
    lua_setfield(L, env, "pcall");
    lua_pushcfunction(L, Xpcall);
    lua_setfield(L, env, "xpcall");
    lua_pushcfunction(L, SetMetatable);
    lua_setfield(L, env, "setmetatable");
    lua_pushcfunction(L, Print);
    lua_setfield(L, env, "print");
    lua_getfield(L, table_copy, "unpack");
    lua_setfield(L, env, "unpack");

    PushProxy(L, string_lib, "string");
    lua_setfield(L, env, "string");
    PushProxy(L, table_copy, "table");
    lua_setfield(L, env, "table");
    PushProxy(L, math_lib, "math");
    lua_setfield(L, env, "math");
    PushProxy(L, utf8_lib, "utf8");
    lua_setfield(L, env, "utf8");
    PushProxy(L, os_copy, "os");
    lua_setfield(L, env, "os");
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");  // _G is the environment itself, never the real globals

    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, EnvIndex);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, env);

    lua_pushvalue(L, env);
    self->env_ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
  }

  // Runs protected from SetReadOnlyGlobal: (value, name as light userdata, env).
  static int SetGlobal(lua_State* L) {
    const char* name = static_cast<const char*>(lua_touserdata(L, 2));
    if (lua_type(L, 1) == LUA_TTABLE) {
      PushProxy(L, 1, name);
    } else {
      lua_pushvalue(L, 1);
    }
    lua_setfield(L, 3, name);
    return 0;
  }
};

Sandbox::Sandbox(int64_t memory_bytes) : limit_(memory_bytes) {
  tripped_.reserve(sizeof trip_message_);
  L_ = lua_newstate(&Sandbox::Alloc, this);
  if (L_ == nullptr) throw std::bad_alloc();
  Sandbox* self = this;
  std::memcpy(lua_getextraspace(L_), &self, sizeof self);
  // Threads made with lua_newthread inherit this hook.
  lua_sethook(L_, &Sandbox::Hook, LUA_MASKCOUNT, kHookEvery);
  lua_pushcfunction(L_, SandboxLib::Open);
  if (lua_pcall(L_, 0, 0, 0) != LUA_OK) {
    // Only a real allocation failure gets here: the cap is not enforced yet.
    lua_close(L_);
    L_ = nullptr;
    throw std::bad_alloc();
  }
  enforce_limit_ = true;
}

Sandbox::~Sandbox() {
  if (L_ != nullptr) lua_close(L_);
}

void* Sandbox::Alloc(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* self = static_cast<Sandbox*>(ud);
  // For a new block (ptr == NULL) osize is a type tag, not a size.
  const size_t old_size = ptr != nullptr ? osize : 0;
  if (nsize == 0) {
    std::free(ptr);
    self->used_ -= static_cast<int64_t>(old_size);
    return nullptr;
  }
  if (nsize > old_size && self->enforce_limit_) {
    const int64_t room = self->limit_ - self->used_;
    if (room < 0 || nsize - old_size > static_cast<uint64_t>(room)) return nullptr;
  }
  void* block = std::realloc(ptr, nsize);
  if (block == nullptr) {
    if (nsize > old_size) return nullptr;
    // Lua assumes a shrink never fails: keep the old block, which is big enough.
    self->used_ -= static_cast<int64_t>(old_size - nsize);
    return ptr;
  }
  self->used_ += static_cast<int64_t>(nsize) - static_cast<int64_t>(old_size);
  if (nsize > old_size && self->armed_ && !self->trip_) {
    self->alloc_uncharged_ += static_cast<int64_t>(nsize - old_size);
    if (self->alloc_uncharged_ >= kAllocChargeEvery) SandboxLib::ChargeAllocation(self);
  }
  return block;
}

void Sandbox::Hook(lua_State* L, lua_Debug*) {
  Sandbox* self = SandboxLib::From(L);
  int64_t n = lua_gethookcount(L);
  char doing[96] = "";
  if (self->armed_ && !self->trip_) {
    // The thread's CPU clock is a system call (some 0.7 us here, against a few for 1000
    // instructions), so it is read only when the monotonic clock says this stretch was slow;
    // preemption makes a stretch slow too, but costs no CPU.
    const int64_t mono = MonoNowNs();
    if (mono - self->mono_mark_ns_ > kSlowStretchNs) {
      const int64_t cpu = ThreadCpuNs();
      const int64_t counted = self->counted_since_cpu_mark_ + n;
      const int64_t worth = (cpu - self->cpu_mark_ns_) / kNsPerInstruction;
      if (worth > counted) {
        std::snprintf(doing, sizeof doing, "(the last %lld instructions took %lld ms of CPU)",
                      static_cast<long long>(counted),
                      static_cast<long long>((cpu - self->cpu_mark_ns_) / 1'000'000));
        n += worth - counted;
      }
      self->cpu_mark_ns_ = cpu;
      self->counted_since_cpu_mark_ = 0;
    } else {
      self->counted_since_cpu_mark_ += n;
    }
    self->mono_mark_ns_ = mono;
  }
  // Level 0: inside a hook the running function is the interrupted Lua function itself.
  SandboxLib::Charge(L, n, 0, doing);
}

void Sandbox::Resuming() {
  mono_mark_ns_ = MonoNowNs();
  cpu_mark_ns_ = ThreadCpuNs();
  counted_since_cpu_mark_ = 0;
}

Status Sandbox::Load(std::string_view source, const std::string& chunkname) {
  if (!lua_checkstack(L_, 2)) return Status::Aborted(chunkname + ": Lua stack overflow");
  // "@name" makes Lua report "name:line:" instead of [string "name"]:line:.
  const std::string name = !chunkname.empty() && (chunkname[0] == '@' || chunkname[0] == '=')
                               ? chunkname
                               : "@" + chunkname;
  const int rc = luaL_loadbufferx(L_, source.data(), source.size(), name.c_str(), "t");
  if (rc != LUA_OK) {
    std::string message = lua_type(L_, -1) == LUA_TSTRING ? lua_tostring(L_, -1) : "load failed";
    lua_pop(L_, 1);
    const std::string shown = name.substr(1);
    if (message.compare(0, shown.size(), shown) != 0) message = shown + ": " + message;
    if (rc == LUA_ERRSYNTAX) return Status::InvalidArgument(std::move(message));
    return Status::Aborted(std::move(message));
  }
  // A main chunk has exactly one upvalue, _ENV.
  lua_rawgeti(L_, LUA_REGISTRYINDEX, env_ref_);
  if (lua_setupvalue(L_, -2, 1) == nullptr) lua_pop(L_, 1);
  return Status::OK();
}

void Sandbox::SetReadOnlyGlobal(const char* name) {
  if (!lua_checkstack(L_, 3)) {
    lua_pop(L_, 1);
    return;
  }
  lua_pushcfunction(L_, SandboxLib::SetGlobal);
  lua_insert(L_, -2);
  lua_pushlightuserdata(L_, const_cast<char*>(name));
  lua_rawgeti(L_, LUA_REGISTRYINDEX, env_ref_);
  // The host's API is not the script's growth: do not let a full cap refuse it.
  const bool enforce = enforce_limit_;
  enforce_limit_ = false;
  if (lua_pcall(L_, 3, 0, 0) != LUA_OK) lua_pop(L_, 1);
  enforce_limit_ = enforce;
}

void Sandbox::Arm(int64_t max_instructions, int64_t deadline_mono_ms, lua_State* thread) {
  max_instructions_ = max_instructions;
  instructions_left_ = max_instructions;
  deadline_mono_ms_ = deadline_mono_ms;
  armed_ = true;
  armed_thread_ = thread;
  alloc_uncharged_ = 0;
  Resuming();
  trip_ = false;
  trip_message_[0] = '\0';
  tripped_.clear();
  lua_sethook(L_, &Sandbox::Hook, LUA_MASKCOUNT, kHookEvery);
  if (thread != nullptr && thread != L_)
    lua_sethook(thread, &Sandbox::Hook, LUA_MASKCOUNT, kHookEvery);
}

void Sandbox::Disarm() {
  armed_ = false;
  armed_thread_ = nullptr;
}

Status Sandbox::PCall(int nargs, int nresults) {
  const int function = lua_gettop(L_) - nargs;
  if (!lua_checkstack(L_, 1)) {
    lua_pop(L_, nargs + 1);
    return Status::Aborted("Lua stack overflow");
  }
  lua_pushcfunction(L_, SandboxLib::PcallTraceback);
  lua_insert(L_, function);
  const int rc = lua_pcall(L_, nargs, nresults, function);
  if (rc == LUA_OK) {
    lua_remove(L_, function);
    return Status::OK();
  }
  std::string message = lua_type(L_, -1) == LUA_TSTRING ? lua_tostring(L_, -1) : "unknown error";
  lua_pop(L_, 2);
  if (rc == LUA_ERRMEM) {
    message += " (memory cap of " + std::to_string(limit_) + " bytes)";
  }
  if (SandboxLib::Tripped(this) && message.find(trip_message_) == std::string::npos) {
    // The trip was reported by something else (a memory error while raising it, say).
    message = std::string(trip_message_) + ": " + message;
  }
  return Status::Aborted(std::move(message));
}

// Runs `fn` inside lua_pcall, so a Lua error (most often the memory cap) becomes a Status
// instead of an unprotected error that would abort the process. With nargs, that many values
// from the top of the stack are passed (at indices 1..nargs inside) and popped.
Status Sandbox::Protected(const std::function<void(lua_State*)>& fn, int nargs) {
  lua_State* L = L_;
  lua_pushcfunction(L, [](lua_State* L) -> int {
    auto* f = static_cast<const std::function<void(lua_State*)>*>(lua_touserdata(L, -1));
    lua_pop(L, 1);
    (*f)(L);
    return 0;
  });
  lua_insert(L, -(nargs + 1));
  lua_pushlightuserdata(L, const_cast<std::function<void(lua_State*)>*>(&fn));
  if (lua_pcall(L, nargs + 1, 0, 0) != LUA_OK) {
    std::string msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error";
    lua_pop(L, 1);
    return Status::Aborted(msg);
  }
  return Status::OK();
}

}  // namespace guardian
