// Sandbox escapes and abuse: each attack must be stopped with a clear message, and the same
// Sandbox must run a normal chunk afterwards.

#include "plugins/sandbox.h"

#include <doctest/doctest.h>
#include <time.h>

#include <cstdint>
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
      // Memory: the accounting allocator refuses growth past the cap.
      {"local s = 'x' while true do s = s .. s end", "not enough memory"},
      {"local s = 'x' while true do s = s:rep(2) end", "not enough memory"},
      {"local s = 'x' while true do s = string.rep(s, 2, s) end", "not enough memory"},
      {"return string.rep('x', 1 << 30)", "not enough memory"},
      {"return ('x'):rep(1 << 29, ',')", "not enough memory"},
      {"return ('x'):rep(1 << 40)", "attack.lua:1: resulting string too large"},
      {"local t = {} local i = 0 while true do i = i + 1 t[i] = {i} end", "not enough memory"},
      {"local t = {} while true do t[#t + 1] = tostring(#t) .. ('y'):rep(100) end",
       "not enough memory"},
      {"while true do pcall(function() local t = {} while true do t[#t + 1] = ('x'):rep(999) .. "
       "#t end end) end",
       "instruction budget exceeded"},
  };
  for (const Attack& a : attacks) ExpectStopped(sb, a.code, a.expected);
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
  CHECK(Contains(Run(sb, "local t = {} while true do t[#t + 1] = {} end").message(),
                 "not enough memory"));
  CHECK(sb.memory_used() <= kMemory);
  lua_gc(sb.L(), LUA_GCCOLLECT);
  CHECK(sb.memory_used() < base + (1 << 20));
  ExpectHealthy(sb);
}

namespace {
// Stands in for a host call that waits (guardian.sleep): yields to the host.
int HostWait(lua_State* L) { return lua_yield(L, 0); }

// Runs `code` as a phase the way the host does: a thread from lua_newthread, lua_resume until
// it stops yielding. Returns the final lua_resume status and stores the error message.
int RunPhase(Sandbox& sb, const char* code, int64_t budget, std::string* error, int* resumes) {
  lua_State* L = sb.L();
  lua_State* thread = lua_newthread(L);
  const int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  REQUIRE(sb.Load(code, "phase.lua").ok());
  lua_xmove(L, thread, 1);
  sb.Arm(budget, 0, thread);
  int status = LUA_YIELD;
  *resumes = 0;
  while (status == LUA_YIELD && *resumes < 100000) {
    int nres = 0;
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
  lua_State* L = sb.L();
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, HostWait);
  lua_setfield(L, -2, "sleep");
  sb.SetReadOnlyGlobal("host");

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

TEST_CASE("a tiny cap still creates the state and refuses the script") {
  Sandbox sb(1024);
  CHECK(sb.memory_used() > 1024);  // the libraries opened at creation are never refused
  const Status s = Run(sb, "local t = {} for i = 1, 100 do t[i] = {} end");
  CHECK_FALSE(s.ok());
  CHECK(Contains(s.message(), "not enough memory"));
}
