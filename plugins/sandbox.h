#pragma once
// Sandbox: one Lua 5.4 state locked down for running untrusted playbook text.
//
// What a chunk loaded here can reach is an allow-list: the safe parts of base, string (no
// string.dump), table, math, utf8, and os.time/os.clock/os.date. No io, os.execute, debug,
// package/require, load/loadfile/dofile, coroutine, rawset/rawget, collectgarbage. Every library
// table is a read-only proxy: writing to it raises, and reading a name that is not there raises
// "'os.execute' is not available in the playbook sandbox". Reading an undefined global raises
// "undefined global 'x'". The string metatable is protected (getmetatable("") is not the real one).
// `print` is a no-op (playbooks log through the host API). `setmetatable` refuses a `__gc` field
// (finalizers run with hooks off, so a looping one could never be stopped), and `xpcall` skips
// its handler once the budget has tripped (for the same reason). string.find/match/gmatch/gsub
// are a bounded matcher of our own (lua_patterns.h): Lua's runs in C beyond the hook's reach.
//
// Budgets: an instruction count and a monotonic wall-clock deadline, checked by a count hook on
// the main state and every thread created from it. Once tripped, the hook re-arms itself to fire
// on every instruction so `pcall` cannot swallow the error. What runs outside instructions is
// charged too, so the budget bounds how long a chunk holds the thread: C loops over a
// script-chosen count (table.insert/remove/move/concat/unpack/sort) up front, scans of a string
// (tonumber, utf8.len/offset/codepoint) by its length, the pattern matcher's steps, allocations
// (one per 16 bytes), errors a pcall catches (1000 each), and slow instructions by the CPU time
// the hook sees they took. Memory: an accounting allocator that refuses growth past the cap (Lua
// raises "not enough memory") and never refuses a shrink; a memory error a pcall or xpcall
// catches trips like the budget. string.rep("", n) returns
// at once instead of looping n times to build "".
//
// For the host: a thread killed by a trip must not be passed to lua_resetthread (its pending
// `<close>` handlers would run with the hook off, unbounded); unref it and let the GC free it.
// Host API calls made outside a protected call can hit the cap too, and an unprotected Lua error
// aborts the process.
//
// Thread: a Sandbox is used by one thread at a time (the loop thread). Lua is built as C++
// (lua5.4-c++), so Lua errors unwind as exceptions and C++ destructors run.

#include <cstdint>
#include <functional>
#include <lua.hpp>
#include <string>
#include <string_view>

#include "daemon/status.h"

namespace guardian {

class Sandbox {
 public:
  // Creates the state with the accounting allocator capped at `memory_bytes` and opens the
  // allow-listed libraries into a fresh environment table. What the libraries take (~20 KB)
  // counts in memory_used() but is never refused. Throws std::bad_alloc if malloc fails.
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
  // (nested tables are wrapped too, on first read): reading raw fields works, writing raises,
  // reading a missing name raises "'name.x' is not available..." (a missing integer key gives
  // nil, so ipairs works). A non-table value is set as is. The memory cap does not apply.
  void SetReadOnlyGlobal(const char* name);

  // Starts a budget: at most `max_instructions` VM instructions (counted across the main
  // state and all its threads) until Disarm, and no instruction after `deadline_mono_ms`
  // (CLOCK_MONOTONIC milliseconds; 0 = none). Resets a hook that a previous trip re-armed on
  // `thread` (pass the thread that will run; nullptr = main state).
  void Arm(int64_t max_instructions, int64_t deadline_mono_ms, lua_State* thread = nullptr);
  void Disarm();
  // Call before resuming an armed thread that waited: the hook charges the CPU time the script
  // took, and the loop's work meanwhile is not the script's.
  void Resuming();
  // Why the budget stopped the script ("instruction budget exceeded (N)", "phase deadline
  // exceeded"), or empty when it did not.
  const std::string& tripped() const { return tripped_; }

  int64_t memory_used() const { return used_; }
  int64_t memory_limit() const { return limit_; }

  // Runs host code `fn` that uses the Lua API inside lua_pcall, so a Lua error it meets (most
  // often the memory cap refusing an allocation) becomes a Status instead of an unprotected
  // error that would abort the process. The top `nargs` values are passed (indices 1..nargs
  // inside `fn`) and popped.
  Status Protected(const std::function<void(lua_State*)>& fn, int nargs = 0);

  // lua_pcall with a traceback handler: on error returns Status::Aborted with the message
  // ("chunk:line: message" then the traceback) and pops it; nothing of the error is left on the
  // stack. A budget trip says so; a memory error reads "not enough memory (memory cap of N
  // bytes)" and has no position (Lua raises it without one).
  Status PCall(int nargs, int nresults);

 private:
  static void* Alloc(void* ud, void* ptr, size_t osize, size_t nsize);
  static void Hook(lua_State* L, lua_Debug* ar);

  friend struct SandboxLib;  // the C functions in sandbox.cpp that check the budget

  lua_State* L_ = nullptr;
  int env_ref_ = LUA_NOREF;  // the environment table, in the registry
  int64_t used_ = 0;
  int64_t limit_ = 0;
  bool enforce_limit_ = false;  // off while the constructor opens the libraries
  int64_t max_instructions_ = 0;
  int64_t instructions_left_ = 0;
  int64_t deadline_mono_ms_ = 0;
  bool armed_ = false;
  lua_State* armed_thread_ = nullptr;  // the thread Arm was given (nullptr: the main state)
  int64_t alloc_uncharged_ = 0;        // bytes allocated while armed, not charged yet
  // For the hook's look at the time: when it last ran (monotonic), this thread's CPU time when
  // it last read it, and the instructions it counted since.
  int64_t mono_mark_ns_ = 0;
  int64_t cpu_mark_ns_ = 0;
  int64_t counted_since_cpu_mark_ = 0;
  // The trip decision lives in plain members so the hook never needs to allocate to make it.
  bool trip_ = false;
  char trip_message_[128] = {};
  std::string tripped_;
};

}  // namespace guardian
