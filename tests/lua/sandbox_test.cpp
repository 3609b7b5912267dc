// Sandbox escapes and abuse: each attack must be stopped with a clear message, and the same
// Sandbox must run a normal chunk afterwards.

#include "plugins/sandbox.h"

#include <doctest/doctest.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

using guardian::Sandbox;
using guardian::Status;

namespace {

constexpr int64_t kMemory = 8 << 20;
constexpr int64_t kBudget = 1'000'000;

int64_t NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// Loads and runs `code` under a budget, discarding results; the stack is left as it was.
Status Run(Sandbox& sb, std::string_view code, int64_t budget = kBudget, int64_t deadline = 0) {
  const int top = lua_gettop(sb.L());
  Status s = sb.Load(code, "attack.lua");
  if (s.ok()) {
    sb.Arm(budget, deadline);
    s = sb.PCall(0, 0);
    sb.Disarm();
  }
  CHECK(lua_gettop(sb.L()) == top);
  return s;
}

// A normal chunk still runs in `sb`, under a fresh budget.
void ExpectHealthy(Sandbox& sb) {
  const int top = lua_gettop(sb.L());
  Status s = sb.Load(
      "local t = {} for i = 1, 100 do t[i] = i * 2 end\n"
      "return t[50] + #('abc'):rep(3) + #string.format('%d', 7)",
      "healthy.lua");
  REQUIRE_MESSAGE(s.ok(), s.message());
  sb.Arm(kBudget, 0);
  s = sb.PCall(0, 1);
  sb.Disarm();
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(lua_tointeger(sb.L(), -1) == 110);
  lua_pop(sb.L(), 1);
  CHECK(sb.tripped().empty());
  CHECK(lua_gettop(sb.L()) == top);
}

void ExpectStopped(Sandbox& sb, std::string_view code, std::string_view expected,
                   int64_t budget = kBudget) {
  INFO("code: " << code);
  const Status s = Run(sb, code, budget);
  CHECK_FALSE(s.ok());
  CHECK(s.code() == Status::Code::kAborted);
  CHECK_MESSAGE(Contains(s.message(), expected), "message: " << s.message());
  ExpectHealthy(sb);
}

struct Attack {
  const char* code;
  const char* expected;
};

int Writer(lua_State*, const void* p, size_t size, void* ud) {
  try {
    static_cast<std::string*>(ud)->append(static_cast<const char*>(p), size);
  } catch (...) {
    return 1;
  }
  return 0;
}

}  // namespace

TEST_CASE("escape attempts are refused with a clear message and the sandbox stays usable") {
  Sandbox sb(kMemory);
  ExpectHealthy(sb);
  const Attack attacks[] = {
      // The os table holds only time, clock and date.
      {"os.execute('touch /tmp/pwned')",
       "attack.lua:1: 'os.execute' is not available in the playbook sandbox"},
      {"os.exit(1)", "'os.exit' is not available in the playbook sandbox"},
      {"return os.getenv('HOME')", "'os.getenv' is not available in the playbook sandbox"},
      {"os.remove('/etc/passwd')", "'os.remove' is not available in the playbook sandbox"},
      // No io, directly or through _G (which is the environment itself).
      {"return io.open('/etc/passwd')", "attack.lua:1: undefined global 'io'"},
      {"return _G.io.open('/etc/passwd')", "undefined global 'io'"},
      {"return _G['i' .. 'o']", "undefined global 'io'"},
      {"return _ENV.io", "undefined global 'io'"},
      // No module loading, no file loading, no load of strings (text or bytecode).
      {"return require('/etc/passwd')", "undefined global 'require'"},
      {"return package.loaded", "undefined global 'package'"},
      {"return package.loadlib('/lib/libc.so.6', 'system')", "undefined global 'package'"},
      {"return dofile('/etc/passwd')", "undefined global 'dofile'"},
      {"return loadfile('/etc/passwd')", "undefined global 'loadfile'"},
      {"return load('\\27Lua\\84\\0')", "undefined global 'load'"},
      {"return loadstring('return 1')", "undefined global 'loadstring'"},
      {"return string.dump(function() end)",
       "'string.dump' is not available in the playbook sandbox"},
      // dump is gone from the real string table too, which string methods index.
      {"return ('').dump(function() end)", "attempt to call a nil value (field 'dump')"},
      // No debug library, no collector control, no coroutines, no raw access.
      {"return debug.getregistry()", "undefined global 'debug'"},
      {"return _G.debug.getregistry()", "undefined global 'debug'"},
      {"return debug.sethook()", "undefined global 'debug'"},
      {"collectgarbage('stop')", "undefined global 'collectgarbage'"},
      {"return coroutine.create(function() end)", "undefined global 'coroutine'"},
      {"return coroutine.wrap(print)", "undefined global 'coroutine'"},
      {"rawset(string, 'dump', print)", "undefined global 'rawset'"},
      {"return rawget(string, 'dump')", "undefined global 'rawget'"},
      {"return nosuch_global + 1", "attack.lua:1: undefined global 'nosuch_global'"},
      {"local function f() return helper() end return f()", "undefined global 'helper'"},
      // Library tables are read-only proxies.
      {"string.evil = 1", "attack.lua:1: 'string' is read-only in the playbook sandbox"},
      {"string.format = nil", "'string' is read-only in the playbook sandbox"},
      {"os.execute = function() end", "'os' is read-only in the playbook sandbox"},
      {"table.insert = nil", "'table' is read-only in the playbook sandbox"},
      {"math.pi = 3", "'math' is read-only in the playbook sandbox"},
      {"utf8.char = nil", "'utf8' is read-only in the playbook sandbox"},
      {"table.insert(string, 'x')", "'string' is read-only in the playbook sandbox"},
      // pairs hands out the proxy as the iteration state, never the real table.
      {"local _, state = pairs(string) state.dump = 1",
       "'string' is read-only in the playbook sandbox"},
      // Metatables of strings, libraries and the environment are protected.
      {"getmetatable('').__index = {}", "attempt to index a boolean value"},
      {"getmetatable('').__index.dump = 1", "attempt to index a boolean value"},
      {"return getmetatable(string).__index", "attempt to index a boolean value"},
      {"setmetatable(string, {})", "cannot change a protected metatable"},
      {"setmetatable(os, nil)", "cannot change a protected metatable"},
      {"setmetatable(_G, nil)", "cannot change a protected metatable"},
      {"return getmetatable(_G).__index", "attempt to index a boolean value"},
      // Finalizers run with hooks off, so a looping one could never be stopped.
      {"setmetatable({}, {__gc = function() while true do end end})",
       "'__gc' metamethods are not available in the playbook sandbox"},
      {"local mt = {__gc = false} setmetatable({}, mt) mt.__gc = function() end",
       "'__gc' metamethods are not available in the playbook sandbox"},
      // CPU: the count hook, re-armed on every instruction once tripped.
      {"while true do end", "attack.lua:1: instruction budget exceeded (1000000)"},
      {"local function f() return f() end return f()", "instruction budget exceeded"},
      {"while true do pcall(function() while true do end end) end", "instruction budget exceeded"},
      {"while true do pcall(pcall, pcall, function() while true do end end) end",
       "instruction budget exceeded"},
      {"while true do pcall(error, 'x') end", "instruction budget exceeded"},
      {"xpcall(function() while true do end end, function() while true do end end)",
       "instruction budget exceeded"},
      {"xpcall(function() error('boom') end, function() while true do end end)",
       "instruction budget exceeded"},
      {"while true do xpcall(function() while true do end end, function(m) return m end) end",
       "instruction budget exceeded"},
      {"while true do local ok = pcall(string.rep, 'x', 10) end", "instruction budget exceeded"},
      {"for _, v in ipairs(setmetatable({}, {__index = function() return 1 end})) do end",
       "instruction budget exceeded"},
      {"error(setmetatable({}, {__tostring = function() while true do end end}))",
       "instruction budget exceeded"},
      {"do local x <close> = setmetatable({}, {__close = function() while true do end end})\n"
       "while true do end end",
       "instruction budget exceeded"},
      // C loops whose length the script controls are charged to the budget up front.
      {"table.insert(setmetatable({}, {__len = function() return 1 << 62 end}), 1, 'x')",
       "instruction budget exceeded"},
      {"table.remove(setmetatable({}, {__len = function() return 1 << 62 end}), 1)",
       "instruction budget exceeded"},
      {"table.move({}, 1, 1 << 62, 2)", "instruction budget exceeded"},
      {"table.move({}, math.mininteger, math.maxinteger, 2)", "too many elements to move"},
      {"local t = {} for i = 1, 5000 do t[i] = i end\n"
       "for i = 1, 10000 do table.insert(t, 1, i) end",
       "instruction budget exceeded"},
      // Virtual elements: an __index written in C answers every read without running an
      // instruction, so these looped in C for 2^40 elements (table.concat returns "" for a
      // table without length, so nothing grows either) or sorted 2^31 zeros.
      {"return table.concat(setmetatable({}, {__index = table.concat}), '', 1, 1 << 40)",
       "instruction budget exceeded"},
      {"return table.concat(setmetatable({}, {__index = table.concat}), '', 1, 1 << 19)",
       "instruction budget exceeded"},
      {"return table.concat({}, '', math.mininteger, math.maxinteger)",
       "instruction budget exceeded"},
      {"table.sort(setmetatable({}, {__len = function() return (1 << 31) - 2 end,\n"
       "  __index = rawlen, __newindex = print}))",
       "instruction budget exceeded"},
      {"while true do table.unpack(setmetatable({}, {__index = rawlen}), 1, 999000) end",
       "instruction budget exceeded"},
      {"while true do unpack('', 1, 999000) end", "instruction budget exceeded"},
      {"table.move(setmetatable({}, {__index = rawlen}), 1, 1 << 20, 1,\n"
       "  setmetatable({}, {__newindex = print}))",
       "instruction budget exceeded"},
  };
  for (const Attack& a : attacks) ExpectStopped(sb, a.code, a.expected);
}

TEST_CASE(
    "memory bombs hit the cap, a caught memory error still ends the run, churn costs budget") {
  Sandbox sb(kMemory);
  // The daemon's default budget: allocations are charged too (16 bytes an instruction), and
  // with the unit tests' smaller one the budget, not the cap, would stop these first.
  constexpr int64_t kDaemonBudget = 10'000'000;
  const Attack attacks[] = {
      // The accounting allocator refuses growth past the cap.
      {"local s = 'x' while true do s = s .. s end", "not enough memory"},
      {"local s = 'x' while true do s = s:rep(2) end", "not enough memory"},
      {"local s = 'x' while true do s = string.rep(s, 2, s) end", "not enough memory"},
      {"return string.rep('x', 1 << 30)", "not enough memory"},
      {"return ('x'):rep(1 << 29, ',')", "not enough memory"},
      {"return ('x'):rep(1 << 40)", "attack.lua:1: resulting string too large"},
      {"local t = {} local i = 0 while true do i = i + 1 t[i] = {i} end", "not enough memory"},
      {"local t = {} while true do t[#t + 1] = tostring(#t) .. ('y'):rep(100) end",
       "not enough memory"},
      {"local parts = {} for i = 1, 200 do parts[i] = ('z'):rep(1 << 16) end\n"
       "local t = {} while true do t[#t + 1] = table.concat(parts) end",
       "not enough memory"},
      // A memory error no pcall or xpcall catches for good: like a budget trip, every later
      // instruction raises again.
      {"while true do pcall(function() local t = {} while true do t[#t + 1] = ('x'):rep(999) .. "
       "#t end end) end",
       "memory cap exceeded (8388608 bytes)"},
      {"local ok, err = pcall(string.rep, 'x', 1 << 30) assert(not ok) return 'went on: ' .. err",
       "memory cap exceeded (8388608 bytes)"},
      {"local ok = xpcall(string.rep, function(m) return m end, 'x', 1 << 30)\n"
       "while true do end",
       "memory cap exceeded (8388608 bytes)"},
      {"while true do pcall(pcall, string.rep, 'x', 1 << 30) end",
       "memory cap exceeded (8388608 bytes)"},
      {"while true do pcall(function() local t = {} while true do t[#t + 1] = ('x'):rep(1 << 16) "
       ".. #t end end) end",
       "memory cap exceeded (8388608 bytes)"},
      // Within the cap, but each instruction builds megabytes: the allocations spend the
      // budget (unbudgeted, these ran until the deadline, holding the loop).
      {"local s = ('x'):rep(1 << 20) while true do local t = s .. s end",
       "instruction budget exceeded (10000000) allocating memory"},
      {"while true do pcall(string.rep, 'x', 1 << 20) end",
       "instruction budget exceeded (10000000) allocating memory"},
      {"local s = ('x'):rep(1 << 20) while true do local u = s:upper() end",
       "instruction budget exceeded (10000000) allocating memory"},
  };
  for (const Attack& a : attacks) {
    // Each bomb starts without the previous one's garbage: lauxlib's buffers (string.rep,
    // table.concat) allocate without Lua's emergency collection, so they would fail early.
    lua_gc(sb.L(), LUA_GCCOLLECT);
    const int64_t start = NowMs();
    ExpectStopped(sb, a.code, a.expected, kDaemonBudget);
    CHECK_MESSAGE(NowMs() - start < 5000, a.code);
  }
  lua_gc(sb.L(), LUA_GCCOLLECT);
  // What a normal script allocates costs little: 1 MiB is 65536 instructions (string.rep
  // allocates twice: its buffer, then the string).
  const Status s = Run(sb, "local s = ('x'):rep(1 << 20) return #s", 200'000);
  CHECK_MESSAGE(s.ok(), s.message());
  CHECK(Contains(Run(sb, "local s = ('x'):rep(3 << 20) return #s", 200'000).message(),
                 "instruction budget exceeded (200000) allocating memory"));
}

TEST_CASE("each caught error costs budget: raising one takes microseconds") {
  Sandbox sb(kMemory);
  // The daemon's budget. Uncharged, this loop raised two million errors, for 13 s.
  const char* loops[] = {"while true do pcall(error, 'again') end",
                         "while true do xpcall(error, function(m) return m end, 'again') end",
                         "while true do pcall(string.rep) end"};
  for (const char* code : loops) {
    const int64_t start = NowMs();
    ExpectStopped(sb, code, "instruction budget exceeded (10000000)", 10'000'000);
    CHECK_MESSAGE(NowMs() - start < 1000, code);
  }
  // A few caught errors cost nothing to speak of.
  const Status s = Run(sb, "for i = 1, 50 do pcall(error, i) end", 100'000);
  CHECK_MESSAGE(s.ok(), s.message());
}

TEST_CASE("slow instructions are charged by the CPU time they take") {
  Sandbox sb(32 << 20);
  // Each of these instructions compares megabytes without allocating. Counted as one each,
  // such a loop ran until the phase deadline; the hook's look at the CPU clock stops it.
  const Attack slow[] = {
      {"local a, b = ('x'):rep(6e6), ('x'):rep(6e6) while a == b do end",
       "instruction budget exceeded (10000000) (the last "},
      {"local a, b = ('x'):rep(6e6), ('x'):rep(6e6) .. 'y' while a < b do end",
       "instruction budget exceeded (10000000) (the last "},
      // C functions that scan a string are charged for it up front: the first 1000
      // instructions would already take seconds.
      {"local s = ('x'):rep(1e7) local n = 0 while true do n = n + utf8.len(s) end",
       "instruction budget exceeded (10000000)"},
      {"local s = ('1'):rep(1e7) while true do local x = tonumber(s) end",
       "instruction budget exceeded (10000000)"},
      {"local s = ('x'):rep(1e7) while true do local x = utf8.offset(s, 1e7) end",
       "instruction budget exceeded (10000000)"},
  };
  for (const Attack& a : slow) {
    const int64_t start = NowMs();
    ExpectStopped(sb, a.code, a.expected, 10'000'000);
    CHECK_MESSAGE(NowMs() - start < 3000, a.code);
  }
}

TEST_CASE("what the environment allows") {
  Sandbox sb(kMemory);
  const Status s = Run(sb, R"lua(
    assert(_G == _ENV and rawequal(_G._G, _G))
    assert(getmetatable('') == false and getmetatable(string) == false)
    assert(getmetatable(_G) == false)
    assert(('x').dump == nil)
    assert(unpack == table.unpack and select('#', unpack({1, 2, 3})) == 3)
    assert(print('goes nowhere') == nil)
    assert(string.rep('', 1 << 62) == '' and string.rep('', 1 << 62, '') == '')
    assert(string.rep('ab', 3, '-') == 'ab-ab-ab' and ('x'):rep(0) == '')
    assert(('%d-%s'):format(4, 'x') == '4-x' and string.upper('a') == 'A')
    assert(math.floor(math.pi) == 3 and math.maxinteger > 0)
    assert(utf8.char(72, 105) == 'Hi' and #utf8.charpattern > 0)
    assert(type(os.time()) == 'number' and type(os.clock()) == 'number')
    assert(type(os.date('%Y')) == 'string')
    local names = {}
    for k in pairs(string) do names[k] = true end
    assert(names.format and names.rep and not names.dump)
    local n = 0
    for k in pairs(os) do n = n + 1 end
    assert(n == 3)
    local t = {3, 1, 2}
    table.sort(t)
    table.insert(t, 4) table.insert(t, 1, 0)
    assert(table.concat(t, ',') == '0,1,2,3,4' and table.remove(t, 1) == 0)
    assert(#table.move({1, 2, 3}, 1, 3, 2) == 4)
    local ok, err = pcall(error, 'inner')
    assert(not ok and err == 'inner')
    local ok2, err2 = xpcall(function() error('e', 0) end, function(m) return 'handled ' .. m end)
    assert(not ok2 and err2 == 'handled e')
    assert(select(2, xpcall(function(a, b) return a + b end, print, 2, 3)) == 5)
    local obj = setmetatable({}, {__index = function(_, k) return k .. '!' end})
    assert(obj.hi == 'hi!')
    do local closed = false
      do local x <close> = setmetatable({}, {__close = function() closed = true end}) end
      assert(closed) end
    helper_defined_here = function() return 1 end
    assert(helper_defined_here() == 1)
  )lua");
  CHECK_MESSAGE(s.ok(), s.message());
}

TEST_CASE("a chunk returning a table of functions can be called from the host") {
  Sandbox sb(kMemory);
  lua_State* L = sb.L();
  REQUIRE(sb.Load(R"lua(
    local function double(x) return x * 2 end
    return {
      name = 'restart',
      verify = function(ctx) return double(ctx.n) end,
      fail = function() error('verify failed') end,
    }
  )lua",
                  "playbook.lua")
              .ok());
  sb.Arm(kBudget, 0);
  REQUIRE(sb.PCall(0, 1).ok());
  REQUIRE(lua_istable(L, -1));
  const int top = lua_gettop(L);

  lua_getfield(L, -1, "verify");
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, 21);
  lua_setfield(L, -2, "n");
  Status s = sb.PCall(1, 1);
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(lua_tointeger(L, -1) == 42);
  lua_pop(L, 1);

  lua_getfield(L, -1, "fail");
  s = sb.PCall(0, 0);
  CHECK_FALSE(s.ok());
  // The first line is "chunk:line: message"; a traceback follows.
  CHECK_MESSAGE(s.message().rfind("playbook.lua:6: verify failed", 0) == 0, s.message());
  CHECK(Contains(s.message(), "stack traceback"));
  CHECK(sb.tripped().empty());
  CHECK(lua_gettop(L) == top);
  lua_pop(L, 1);
  sb.Disarm();
}

TEST_CASE("Load refuses binary chunks, including real bytecode from an unrestricted state") {
  std::string bytecode;
  {
    lua_State* raw = luaL_newstate();
    luaL_openlibs(raw);
    REQUIRE(luaL_loadstring(raw, "return os.execute('true')") == LUA_OK);
    REQUIRE(lua_dump(raw, Writer, &bytecode, 0) == 0);
    lua_close(raw);
  }
  REQUIRE(bytecode.rfind("\x1bLua", 0) == 0);

  Sandbox sb(kMemory);
  const int top = lua_gettop(sb.L());
  Status s = sb.Load(bytecode, "evil.luac");
  CHECK_FALSE(s.ok());
  CHECK_MESSAGE(Contains(s.message(), "evil.luac: attempt to load a binary chunk (mode is 't')"),
                s.message());
  CHECK(lua_gettop(sb.L()) == top);

  s = sb.Load("return (", "broken.lua");
  CHECK(s.code() == Status::Code::kInvalidArgument);
  CHECK(s.message().rfind("broken.lua:1:", 0) == 0);
  CHECK(lua_gettop(sb.L()) == top);

  // The chunk name the host passes with '@' is used as is.
  s = sb.Load("return nope", "@/etc/guardian/playbooks/x.lua");
  REQUIRE(s.ok());
  sb.Arm(kBudget, 0);
  s = sb.PCall(0, 0);
  CHECK(s.message().rfind("/etc/guardian/playbooks/x.lua:1: undefined global 'nope'", 0) == 0);
  ExpectHealthy(sb);
}

TEST_CASE("a wall-clock deadline stops a loop that has instructions to spare") {
  Sandbox sb(kMemory);
  const int64_t start = NowMs();
  Status s = Run(sb, "while true do end", int64_t{1} << 60, start + 100);
  const int64_t elapsed = NowMs() - start;
  CHECK_FALSE(s.ok());
  CHECK_MESSAGE(Contains(s.message(), "attack.lua:1: phase deadline exceeded"), s.message());
  CHECK(sb.tripped() == "phase deadline exceeded");
  CHECK(elapsed >= 100);
  CHECK(elapsed < 5000);

  // The same with pcall in the way.
  s = Run(sb, "while true do pcall(function() while true do end end) end", int64_t{1} << 60,
          NowMs() + 50);
  CHECK(Contains(s.message(), "phase deadline exceeded"));
  ExpectHealthy(sb);
}

TEST_CASE("the budget resets between Arm calls and Disarm stops counting") {
  Sandbox sb(kMemory);
  // About 100k instructions per run: five runs would exceed one 300k budget together.
  for (int i = 0; i < 5; ++i) {
    const Status s = Run(sb, "local n = 0 for i = 1, 50000 do n = n + 1 end", 300'000);
    CHECK_MESSAGE(s.ok(), s.message());
  }
  Status s = Run(sb, "local n = 0 for i = 1, 500000 do n = n + 1 end", 300'000);
  CHECK(Contains(s.message(), "instruction budget exceeded (300000)"));
  CHECK(sb.tripped() == "instruction budget exceeded (300000)");

  // After a trip the hook fires on every instruction until the next Arm resets it.
  sb.Arm(300'000, 0);
  CHECK(sb.tripped().empty());
  sb.Disarm();
  s = sb.Load("local n = 0 for i = 1, 2000000 do n = n + 1 end return n", "free.lua");
  REQUIRE(s.ok());
  s = sb.PCall(0, 1);  // not armed: no budget
  CHECK_MESSAGE(s.ok(), s.message());
  CHECK(lua_tointeger(sb.L(), -1) == 2000000);
  lua_pop(sb.L(), 1);
  ExpectHealthy(sb);
}

namespace {
int Answer(lua_State* L) {
  lua_pushinteger(L, luaL_checkinteger(L, 1) + 22);
  return 1;
}
}  // namespace

TEST_CASE("SetReadOnlyGlobal exposes a host table whose functions are callable") {
  Sandbox sb(kMemory);
  lua_State* L = sb.L();
  lua_createtable(L, 0, 3);
  lua_pushcfunction(L, Answer);
  lua_setfield(L, -2, "answer");
  lua_createtable(L, 2, 1);
  lua_pushinteger(L, 10);
  lua_rawseti(L, -2, 1);
  lua_pushinteger(L, 20);
  lua_rawseti(L, -2, 2);
  lua_pushinteger(L, 42);
  lua_setfield(L, -2, "value");
  lua_setfield(L, -2, "nested");
  lua_pushstring(L, "1.0");
  lua_setfield(L, -2, "version");
  const int top = lua_gettop(L);
  sb.SetReadOnlyGlobal("guardian");
  CHECK(lua_gettop(L) == top - 1);

  Status s = Run(sb, R"lua(
    assert(guardian.answer(20) == 42)
    assert(guardian.nested.value == 42 and guardian.nested == guardian.nested)
    assert(#guardian.nested == 2)
    local sum = 0
    for _, v in ipairs(guardian.nested) do sum = sum + v end
    assert(sum == 30)
    local keys = 0
    for k, v in pairs(guardian) do keys = keys + 1 end
    assert(keys == 3)
    assert(getmetatable(guardian) == false)
  )lua");
  CHECK_MESSAGE(s.ok(), s.message());
  ExpectStopped(sb, "guardian.answer = nil", "'guardian' is read-only in the playbook sandbox");
  ExpectStopped(sb, "guardian.nested.value = 1",
                "'guardian.nested' is read-only in the playbook sandbox");
  ExpectStopped(sb, "for _, t in pairs(guardian) do if type(t) == 'table' then t.x = 1 end end",
                "'guardian.nested' is read-only in the playbook sandbox");
  ExpectStopped(sb, "return guardian.spawn('sh')",
                "'guardian.spawn' is not available in the playbook sandbox");
  ExpectStopped(sb, "setmetatable(guardian, {})", "cannot change a protected metatable");
}

TEST_CASE("memory_used goes up and down, and the cap holds") {
  Sandbox sb(kMemory);
  CHECK(sb.memory_limit() == kMemory);
  const int64_t base = sb.memory_used();
  CHECK(base > 0);
  CHECK(base < kMemory);

  REQUIRE(Run(sb, "big = ('x'):rep(2 << 20)").ok());
  const int64_t with_big = sb.memory_used();
  CHECK(with_big >= base + (2 << 20));

  REQUIRE(Run(sb, "big = nil").ok());
  lua_gc(sb.L(), LUA_GCCOLLECT);
  CHECK(sb.memory_used() < with_big - (2 << 20) + 4096);

  // A bomb fails, and the memory comes back once it is garbage.
  CHECK(Contains(Run(sb, "local t = {} while true do t[#t + 1] = {} end", 10'000'000).message(),
                 "not enough memory"));
  CHECK(sb.memory_used() <= kMemory);
  lua_gc(sb.L(), LUA_GCCOLLECT);
  CHECK(sb.memory_used() < base + (1 << 20));
  ExpectHealthy(sb);
}

namespace {
// Stands in for a host call that waits (guardian.sleep): yields to the host.
int HostWait(lua_State* L) { return lua_yield(L, 0); }

// Makes host.sleep() (HostWait) a global of `sb`.
void InstallHost(Sandbox& sb) {
  lua_State* L = sb.L();
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, HostWait);
  lua_setfield(L, -2, "sleep");
  sb.SetReadOnlyGlobal("host");
}

// Runs `code` as a phase the way the host does: a thread from lua_newthread, lua_resume until
// it stops yielding, `between` run before each resume (the loop's other work). Returns the
// final lua_resume status and stores the error message.
int RunPhase(Sandbox& sb, const char* code, int64_t budget, std::string* error, int* resumes,
             const std::function<void()>& between = {}) {
  lua_State* L = sb.L();
  lua_State* thread = lua_newthread(L);
  const int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  REQUIRE(sb.Load(code, "phase.lua").ok());
  lua_xmove(L, thread, 1);
  sb.Arm(budget, 0, thread);
  int status = LUA_YIELD;
  *resumes = 0;
  while (status == LUA_YIELD && *resumes < 100000) {
    if (between) between();
    int nres = 0;
    sb.Resuming();
    status = lua_resume(thread, L, 0, &nres);
    ++*resumes;
    if (status == LUA_YIELD) lua_pop(thread, nres);
  }
  if (status != LUA_OK && lua_type(thread, -1) == LUA_TSTRING) *error = lua_tostring(thread, -1);
  sb.Disarm();
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  return status;
}
}  // namespace

TEST_CASE("threads made by the host are bound by the same budget") {
  Sandbox sb(kMemory);
  InstallHost(sb);

  std::string error;
  int resumes = 0;
  CHECK(RunPhase(sb, "while true do end", 100'000, &error, &resumes) == LUA_ERRRUN);
  CHECK_MESSAGE(Contains(error, "phase.lua:1: instruction budget exceeded (100000)"), error);

  error.clear();
  CHECK(RunPhase(sb, "while true do pcall(function() while true do end end) end", 100'000, &error,
                 &resumes) == LUA_ERRRUN);
  CHECK(Contains(error, "instruction budget exceeded"));

  // Budget is spent across yields: each slice is small, the sum is not.
  error.clear();
  CHECK(RunPhase(sb, "while true do host.sleep() for i = 1, 1000 do end end", 200'000, &error,
                 &resumes) == LUA_ERRRUN);
  CHECK(Contains(error, "instruction budget exceeded"));
  CHECK(resumes > 10);

  // A phase within budget finishes, even after the trips above.
  error.clear();
  CHECK(RunPhase(sb, "for i = 1, 3 do host.sleep() end return 'done'", 100'000, &error, &resumes) ==
        LUA_OK);
  CHECK(resumes == 4);
  CHECK(error.empty());

  // Waiting inside xpcall works (it keeps the continuation).
  CHECK(RunPhase(sb, "local ok = xpcall(host.sleep, print) assert(ok)", 100'000, &error,
                 &resumes) == LUA_OK);
  CHECK(resumes == 2);
  ExpectHealthy(sb);
}

TEST_CASE("what the loop computes while a phase waits is not charged to the phase") {
  Sandbox sb(kMemory);
  InstallHost(sb);
  std::string error;
  int resumes = 0;
  // Between two resumes the loop does 50 ms of other work on this thread: 500,000
  // instructions' worth of CPU if the phase were charged for it.
  const int status =
      RunPhase(sb, "for i = 1, 3 do host.sleep() for j = 1, 2000 do end end return 'done'", 100'000,
               &error, &resumes, [] {
                 const int64_t until = NowMs() + 50;
                 volatile uint64_t spin = 0;
                 while (NowMs() < until) spin = spin + 1;
               });
  CHECK_MESSAGE(status == LUA_OK, error);
  CHECK(resumes == 4);
  CHECK(sb.tripped().empty());
}

TEST_CASE("a tiny cap still creates the state and refuses the script") {
  Sandbox sb(1024);
  CHECK(sb.memory_used() > 1024);  // the libraries opened at creation are never refused
  const Status s = Run(sb, "local t = {} for i = 1, 100 do t[i] = {} end");
  CHECK_FALSE(s.ok());
  CHECK(Contains(s.message(), "not enough memory"));
}

namespace {
// Defined in both states of the pattern comparison: renders values (and an error) as text.
constexpr const char* kRenderPrelude = R"lua(
  local function render(...)
    local out = {}
    for i = 1, select('#', ...) do
      local v = select(i, ...)
      out[#out + 1] = type(v) .. ':' .. tostring(v)
    end
    return table.concat(out, ' ')
  end
  -- Every step of a gmatch iterator, at most 100.
  local function steps(iter)
    local out = {}
    for _ = 1, 100 do
      local r = table.pack(iter())
      if r.n == 0 or r[1] == nil then break end
      out[#out + 1] = '{' .. render(table.unpack(r, 1, r.n)) .. '}'
    end
    return table.concat(out, ' ')
  end
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
  local ALL = table.concat(bytes)
  return function(expr_fn) return render(pcall(expr_fn, render, steps, ALL)) end
)lua";

// Evaluates `expr` (which may use render, steps and ALL, all 256 bytes) in `L` as `chunk`;
// returns the rendered results of pcall(expr).
std::string Evaluate(lua_State* L, const std::string& expr, bool sandboxed, Sandbox* sb) {
  const std::string code = std::string(kRenderPrelude);
  const std::string call =
      "local render, steps, ALL = ... return " + expr;  // compiled as its own chunk
  std::string out;
  auto load = [&](const std::string& text, const char* name) {
    if (sandboxed) return sb->Load(text, name);
    const int rc = luaL_loadbuffer(L, text.data(), text.size(), (std::string("@") + name).c_str());
    return rc == LUA_OK ? Status::OK() : Status::Aborted(lua_tostring(L, -1));
  };
  const int top = lua_gettop(L);
  Status s = load(code, "prelude");
  REQUIRE_MESSAGE(s.ok(), s.message());
  if (sandboxed) {
    sb->Arm(100'000'000, 0);
    s = sb->PCall(0, 1);
  } else {
    s = lua_pcall(L, 0, 1, 0) == LUA_OK ? Status::OK() : Status::Aborted(lua_tostring(L, -1));
  }
  REQUIRE_MESSAGE(s.ok(), s.message());
  s = load(call, "cases");
  REQUIRE_MESSAGE(s.ok(), s.message() << " in " << expr);
  if (sandboxed) {
    s = sb->PCall(1, 1);
    sb->Disarm();
  } else {
    s = lua_pcall(L, 1, 1, 0) == LUA_OK ? Status::OK() : Status::Aborted(lua_tostring(L, -1));
  }
  REQUIRE_MESSAGE(s.ok(), s.message());
  out = lua_tostring(L, -1);
  lua_settop(L, top);
  return out;
}
}  // namespace

TEST_CASE("the bounded pattern functions agree with Lua's own") {
  Sandbox sb(kMemory);
  lua_State* stock = luaL_newstate();
  luaL_openlibs(stock);
  const char* cases[] = {
      // Anchors and init.
      "('hello world'):find('^hello')",
      "('hello world'):find('^world')",
      "('hello'):match('o$')",
      "('hel$lo'):match('l$l')",
      "('abc'):find('b$')",
      "('abc'):find('^')",
      "('abc'):find('$')",
      "('abc'):match('^(a)(.-)$')",
      "('abcabc'):find('b', 3)",
      "('abc'):find('b', -1)",
      "('abc'):find('c', -10)",
      "('abc'):find('', 4)",
      "('abc'):find('', 5)",
      "('abc'):match('^b', 2)",
      "('abc'):match('^b')",
      "('aaa'):find('^a', 2)",
      "('abc'):find('x*', 10)",
      "string.find('', '')",
      "string.find('', '^$')",
      "string.match('', '.')",
      // Every class, and its complement, over all 256 bytes.
      "ALL:gsub('%a+', '<%0>')",
      "ALL:gsub('%A+', '<%0>')",
      "ALL:gsub('%c+', '<%0>')",
      "ALL:gsub('%C+', '<%0>')",
      "ALL:gsub('%d+', '<%0>')",
      "ALL:gsub('%D+', '<%0>')",
      "ALL:gsub('%g+', '<%0>')",
      "ALL:gsub('%G+', '<%0>')",
      "ALL:gsub('%l+', '<%0>')",
      "ALL:gsub('%L+', '<%0>')",
      "ALL:gsub('%p+', '<%0>')",
      "ALL:gsub('%P+', '<%0>')",
      "ALL:gsub('%s+', '<%0>')",
      "ALL:gsub('%S+', '<%0>')",
      "ALL:gsub('%u+', '<%0>')",
      "ALL:gsub('%U+', '<%0>')",
      "ALL:gsub('%w+', '<%0>')",
      "ALL:gsub('%W+', '<%0>')",
      "ALL:gsub('%x+', '<%0>')",
      "ALL:gsub('%X+', '<%0>')",
      "ALL:gsub('%z+', '<%0>')",
      "ALL:gsub('%.', '!')",
      "ALL:gsub('.', '')",
      "ALL:gsub('%%', '!')",
      // Sets: ranges, negation, classes inside, ']' and '-' as members.
      "ALL:gsub('[a-f]+', '<%0>')",
      "ALL:gsub('[^a-f]+', '<%0>')",
      "ALL:gsub('[%d_]+', '<%0>')",
      "ALL:gsub('[^%s%d]+', '<%0>')",
      "('a]b'):match('[]]')",
      "('a]b'):match('[^]]+')",
      "('a-b'):match('[a-]+')",
      "('-ab'):match('[-a]+')",
      "('x]y'):match('[%]]')",
      "('az-'):gsub('[%a-z]', '.')",
      "('%5a'):gsub('[a-%d]', '.')",
      "ALL:gsub('[\\0-\\31]+', '<%0>')",
      "ALL:gsub('[\\128-\\255]+', '<%0>')",
      "('^x'):match('[%^x]+')",
      "('a^b'):match('[b^]+')",
      "('x'):find('[]')",
      "('x'):find('[^]')",
      "('x'):find('[a')",
      "('x'):find('[a%')",
      "('x'):find('[%a')",
      // Quantifiers.
      "('aaab'):match('a*')",
      "('aaab'):match('a+b')",
      "('aaab'):match('a-b')",
      "('aaab'):match('a?a?b')",
      "('b'):match('a*b')",
      "('b'):match('a+b')",
      "('<a><b>'):match('<(.-)>')",
      "('<a><b>'):match('<(.*)>')",
      "('  x  '):match('^%s*(.-)%s*$')",
      "('aaa'):match('a-$')",
      "('aaa'):match('^a-')",
      "('xyz'):match('.-')",
      "('xyz'):match('.*')",
      "('abab'):match('[ab]*b')",
      "('2024-01-15'):match('(%d+)-(%d+)-(%d+)')",
      "('path/to/f.txt'):match('([^/]+)$')",
      "('path/to/f.txt'):match('^(.*)/')",
      "('aaa'):find('a-a-a-a')",
      "('x+y'):match('x+y')",
      "('a*b'):match('a%*b')",
      "('a.b'):match('a%.b')",
      "('f(x)'):match('%((.)%)')",
      // Captures, position captures, nesting, errors.
      "('hello world'):match('(h)(e)(l)(l)(o)')",
      "('key = value'):match('(%w+)%s*=%s*(%w+)')",
      "('hello'):match('()ll()')",
      "('hello'):find('()ll()')",
      "('abcd'):match('((a)(b))')",
      "('abc'):match('()')",
      "('abc'):find('(b)(c)')",
      "('abc'):match('(a')",
      "('abc'):match('a)')",
      "('abc'):match('(()')",
      "('x'):match(('()'):rep(32))",
      "('x'):match(('()'):rep(33))",
      "('abc'):match('((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))')",
      "('abc'):match('(.)(.)(.)')",
      "('aaa'):match('(a*(.))')",
      // %b and %f.
      "('f(a(b)c)d'):match('%b()')",
      "('[[x]]'):match('%b[]')",
      "('((('):match('%b()')",
      "('x'):match('%b')",
      "('x'):match('%bx')",
      "('aXbYc'):match('%bXY')",
      "('xx'):match('%bxx')",
      "('(a)(b)'):gsub('%b()', '#')",
      "('THE (quick) fox'):gsub('%f[%a]%a+', 'W')",
      "('hello world'):find('%f[%w]%w+', 2)",
      "('abc def'):gsub('%f[%W]', '|')",
      "('abc'):gsub('%f[%w]', '|')",
      "('x'):match('%f')",
      "('x'):match('%fa')",
      "('x'):match('%f[a')",
      "('a\\0b'):gsub('%f[%z]', '|')",
      "('ab'):gsub('%f[\\0]', '|')",
      // Back-references.
      "([[say \"hi\" and 'yo']]):match([[([\"'])(.-)%1]])",
      "('abab'):match('(ab)%1')",
      "('abac'):match('(ab)%1')",
      "('aa'):match('(a)%2')",
      "('x'):match('%0')",
      "('x'):match('%1')",
      "('ab'):match('()%1')",
      "('aa'):match('(a%1)')",
      "('xyzxyz'):find('(x(y)z)%2')",
      // gsub: string, number, table and function replacements, n, anchors, empty matches.
      "('hello world'):gsub('o', '0')",
      "('aaa'):gsub('a', 'b', 2)",
      "('aaa'):gsub('a', 'b', 0)",
      "('aaa'):gsub('a', 'b', -1)",
      "('abc'):gsub('', '-')",
      "('abc'):gsub('x*', '-')",
      "('hello world'):gsub('(%w+)', '<%1>')",
      "('hello world'):gsub('%w+', '%0 %0', 1)",
      "('abc'):gsub('%w', '%%')",
      "('abc'):gsub('%w', '%1')",
      "('abc'):gsub('%w', '%2')",
      "('abc'):gsub('%w', '%')",
      "('abc'):gsub('%w', '%x')",
      "('abc'):gsub('()b', '%1')",
      "('abc'):gsub('b', 5)",
      "('abc'):gsub('b', 5.5)",
      "('abc'):gsub('^a', 'x')",
      "('aaa'):gsub('^a', 'x')",
      "('hello'):gsub('l*', '-')",
      "('abc'):gsub('$', '!')",
      "('$name is $age'):gsub('%$(%w+)', {name = 'Bob', age = 42})",
      "('$name $x'):gsub('%$(%w+)', {name = 'Bob'})",
      "('abc'):gsub('.', {a = 1, b = true})",
      "('abc'):gsub('.', {a = false})",
      "('1 2 3'):gsub('%d', function(d) return d * 2 end)",
      "('a b'):gsub('%a', function() return nil end)",
      "('a b'):gsub('%a', function() return false end)",
      "('a b'):gsub('%a', function() return {} end)",
      "('k=v'):gsub('(%w)=(%w)', function(k, v) return v .. '=' .. k end)",
      "('abc'):gsub('()', function(p) return p end)",
      "('abc'):gsub('x', true)",
      "('abc'):gsub('x')",
      "('a,b,,c'):gsub(',', ';')",
      "('CamelCaseString'):gsub('(%u)', ' %1')",
      "('  trim  '):gsub('^%s+', '')",
      "('x'):gsub('x', '%0%0%0')",
      "('a\\0b'):gsub('\\0', 'Z')",
      // gmatch, with and without captures, anchors (a '^' is literal here) and init.
      "steps(('one two  three'):gmatch('%a+'))",
      "steps(('k1=v1, k2=v2'):gmatch('(%w+)=(%w+)'))",
      "steps(('abc'):gmatch(''))",
      "steps(('^a^a'):gmatch('^a'))",
      "steps(('aaa'):gmatch('^a'))",
      "steps(('hello'):gmatch('()l'))",
      "steps(('abcabc'):gmatch('a', 2))",
      "steps(('abcabc'):gmatch('a', -3))",
      "steps(('abc'):gmatch('x*'))",
      "steps(('abc'):gmatch('.', 10))",
      "steps(('a,b,,c'):gmatch('([^,]*)'))",
      "steps(('x'):gmatch('[a'))",
      // Plain find.
      "('a.b'):find('.', 1, true)",
      "('a+b'):find('+', 1, true)",
      "('aaa'):find('aa', 2, true)",
      "('abc'):find('', 2, true)",
      "('abc'):find('abcd', 1, true)",
      "('a\\0b'):find('\\0', 1, true)",
      "('a\\0b'):find('\\0b')",
      "('abcabc'):find('ca')",
      "('abc'):find('c', 4, true)",
      "('xaaab'):find('aab', 1, true)",
      "('abc'):find('[', 1, true)",
      // Bad arguments.
      "string.find(nil, 'x')",
      "string.find('x', nil)",
      "string.find('x', 'x', 'y')",
      "string.gsub('x', 'x', 'y', 'z')",
      "steps(string.gmatch(1, 2))",
      "string.match(12345, 3)",
      // Recursion depth.
      "('a'):rep(300):match(('a?'):rep(300))",
      "('a'):rep(100):match(('a?'):rep(100))",
  };
  for (const char* expr : cases) {
    const std::string ours = Evaluate(sb.L(), expr, true, &sb);
    const std::string theirs = Evaluate(stock, expr, false, nullptr);
    CHECK_MESSAGE(ours == theirs, std::string(expr)
                                      << "\n  sandbox: " << ours << "\n  stock:   " << theirs);
  }

  // Then random short patterns over a small alphabet of items (well formed or not) on random
  // short subjects, the same sequence in both states: one line per pair.
  const std::string random_pairs = R"lua((function()
    local seed = 20240611
    local function pick(list)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return list[seed % #list + 1]
    end
    local items = {'a', 'b', '.', '%a', '%d', '%s', '[ab]', '[^a]', '[a-c]', '(', ')', '()',
                   '%1', '%2', '%b()', '%f[a]', '%f[%s]', '^', '$', '*', '+', '-', '?', '%',
                   '[', ']', 'x', '1', ' '}
    local chars = {'a', 'b', '(', ')', '1', 'x', ' ', 'c'}
    local sizes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
    local out = {}
    for i = 1, 4000 do
      local p, s = {}, {}
      for j = 1, pick(sizes) % 6 + 1 do p[j] = pick(items) end
      for j = 1, pick(sizes) do s[j] = pick(chars) end
      p, s = table.concat(p), table.concat(s)
      out[#out + 1] = string.format('%q %q | %s | %s | %s | %s', s, p,
          render(pcall(string.find, s, p)), render(pcall(string.match, s, p, 2)),
          render(pcall(string.gsub, s, p, '<%0>')),
          render(pcall(function() return steps(s:gmatch(p)) end)))
    end
    return table.concat(out, '\n')
  end)())lua";
  const std::string ours = Evaluate(sb.L(), random_pairs, true, &sb);
  const std::string theirs = Evaluate(stock, random_pairs, false, nullptr);
  size_t line_start = 0;
  size_t differs = 0;
  while (differs < ours.size() && differs < theirs.size() && ours[differs] == theirs[differs]) {
    if (ours[differs] == '\n') line_start = differs + 1;
    ++differs;
  }
  CHECK_MESSAGE(ours == theirs,
                "first difference, in the line:\n  sandbox: "
                    << ours.substr(line_start, ours.find('\n', line_start) - line_start)
                    << "\n  stock:   "
                    << theirs.substr(line_start, theirs.find('\n', line_start) - line_start));
  CHECK(std::count(ours.begin(), ours.end(), '\n') == 3999);
  lua_close(stock);
}

TEST_CASE("pattern matching is charged to the budget: backtracking stops, normal use fits") {
  Sandbox sb(kMemory);
  // With Lua's own matcher each of these ran in C for hours, beyond the hook's reach.
  const Attack attacks[] = {
      {"return ('a'):rep(1e5):find('.-.-.-.-.-.-.-b')",
       "attack.lua:1: instruction budget exceeded (1000000) matching a pattern in string.find"},
      {"return string.rep('a', 28):match(string.rep('a?', 28) .. string.rep('a', 28))",
       "instruction budget exceeded (1000000) matching a pattern in string.match"},
      {"return ('a'):rep(5000):gsub('.-.-b', 'x')",
       "instruction budget exceeded (1000000) matching a pattern in string.gsub"},
      {"for w in ('a'):rep(5000):gmatch('.-.-b') do end",
       "instruction budget exceeded (1000000) matching a pattern in string.gmatch"},
      {"return ('('):rep(1e5):find('%b()%b()%b()')", "matching a pattern in string.find"},
      {"local s = ('ab'):rep(2e4) return s:match('(.-)%1%1%1x')",
       "matching a pattern in string.match"},
      {"return ('a'):rep(1e6):find(('a'):rep(1e4) .. 'b', 1, true)",
       "matching a pattern in string.find"},
      {"return ('a'):rep(1e6):find(('a'):rep(1e4) .. 'b')", "matching a pattern in string.find"},
      // pcall cannot swallow it: every later instruction raises again.
      {"while true do pcall(string.find, ('a'):rep(1e4), '.-.-.-b') end",
       "instruction budget exceeded (1000000) matching a pattern in string.find"},
      {"local n = 0 while true do n = n + select('#', pcall(string.match, ('a'):rep(2e3), "
       "'.-.-b')) end",
       "instruction budget exceeded"},
      {"return ('x'):match(('x'):rep(5000))",
       "string.match: pattern too long (5000 bytes; the playbook sandbox allows 4096)"},
      {"return ('x'):gsub(('%d'):rep(2049), '')", "string.gsub: pattern too long"},
      {"return ('x'):gmatch(('.'):rep(4097))", "string.gmatch: pattern too long"},
  };
  for (const Attack& a : attacks) {
    const int64_t start = NowMs();
    ExpectStopped(sb, a.code, a.expected);
    CHECK_MESSAGE(NowMs() - start < 3000, a.code);
  }

  // What playbooks do with patterns costs a small part of the budget, also on a 1 MB subject.
  const Status s = Run(sb, R"lua(
    local text = ('line of a log file\n'):rep(60000) .. 'port: 8080\n'
    assert(#text > 1e6)
    assert(text:match('port: (%d+)') == '8080')
    assert(text:find('port:', 1, true) == #text - 10)
    local lines = 0
    for _ in text:sub(1, 19000):gmatch('[^\n]+') do lines = lines + 1 end
    assert(lines == 1000)
    assert(select(2, text:sub(1, 19000):gsub('\n', '')) == 1000)
    assert(('12|active|300'):match('^(%d+)|(%a+)|(%d+)$') == '12')
    assert(('x'):rep(4096):match(('x'):rep(4096)))
  )lua");
  CHECK_MESSAGE(s.ok(), s.message());

  // A wall-clock deadline stops a match that has budget to spare.
  const int64_t start = NowMs();
  const Status late =
      Run(sb, "return ('a'):rep(1e5):find('.-.-.-.-.-.-.-b')", int64_t{1} << 60, NowMs() + 100);
  CHECK_MESSAGE(
      Contains(late.message(), "phase deadline exceeded matching a pattern in string.find"),
      late.message());
  CHECK(NowMs() - start < 3000);
  ExpectHealthy(sb);
}
