#pragma once
// Sandbox: one Lua 5.4 state locked down for running untrusted playbook text.
//
// What a chunk loaded here can reach is an allow-list: the safe parts of base, string (no
// string.dump), table, math, utf8, and os.time/os.clock/os.date. No io, os.execute, debug,
// package/require, load/loadfile/dofile, coroutine, rawset/rawget, collectgarbage. Every library
// table is a read-only proxy: writing to it raises, and reading a name that is not there raises
// "'os.execute' is not available in the playbook sandbox". Reading an undefined global raises
// "undefined global 'x'". The string metatable is protected (getmetatable("") is not the real one).
//
// Budgets: an instruction count and a monotonic wall-clock deadline, checked by a count hook on
// the main state and every thread created from it. Once tripped, the hook re-arms itself to fire
// on every instruction so `pcall` cannot swallow the error. Memory: an accounting allocator that
// refuses growth past the cap (Lua raises "not enough memory") and never refuses a shrink.
//
// Thread: a Sandbox is used by one thread at a time (the loop thread). Lua is built as C++
// (lua5.4-c++), so Lua errors unwind as exceptions and C++ destructors run.

#include <lua.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "daemon/status.h"

namespace guardian {

class Sandbox {
 public:
  // Creates the state with the accounting allocator capped at `memory_bytes` and opens the
  // allow-listed libraries into a fresh environment table.
  explicit Sandbox(int64_t memory_bytes);
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  lua_State* L() const { return L_; }

  // Compiles `source` as text only (a binary chunk is refused with an error), with the
  // sandbox environment as its _ENV, and pushes the function on L(). `chunkname` appears in
  // error messages as "chunkname:line: ...". On error nothing is pushed.
  Status Load(std::string_view source, const std::string& chunkname);

  // Pops the table on top of L() and makes it a read-only global `name` of the environment
  // (nested tables are wrapped too): reading works, writing raises.
  void SetReadOnlyGlobal(const char* name);

  // Starts a budget: at most `max_instructions` VM instructions (counted across the main
  // state and all its threads) until Disarm, and no instruction after `deadline_mono_ms`
  // (CLOCK_MONOTONIC milliseconds; 0 = none). Resets a hook that a previous trip re-armed on
  // `thread` (pass the thread that will run; nullptr = main state).
  void Arm(int64_t max_instructions, int64_t deadline_mono_ms, lua_State* thread = nullptr);
  void Disarm();
  // Why the budget stopped the script ("instruction budget exceeded (N)", "phase deadline
  // exceeded"), or empty when it did not.
  const std::string& tripped() const { return tripped_; }

  int64_t memory_used() const { return used_; }
  int64_t memory_limit() const { return limit_; }

  // lua_pcall with a traceback handler: on error returns Status::Aborted with the message
  // ("chunk:line: message") and pops it; nothing of the error is left on the stack.
  Status PCall(int nargs, int nresults);

 private:
  static void* Alloc(void* ud, void* ptr, size_t osize, size_t nsize);
  static void Hook(lua_State* L, lua_Debug* ar);

  lua_State* L_ = nullptr;
  int env_ref_ = LUA_NOREF;  // the environment table, in the registry
  int64_t used_ = 0;
  int64_t limit_ = 0;
  int64_t instructions_left_ = 0;
  int64_t deadline_mono_ms_ = 0;
  bool armed_ = false;
  std::string tripped_;
};

}  // namespace guardian
