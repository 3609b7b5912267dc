#pragma once
// CrashPoint: named places where a test build (GUARDIAN_TEST_HOOKS) can be told to die.
// GUARDIAN_CRASH_AT=NAME[#N] makes guardiand SIGKILL itself the N-th time (default 1) it passes
// NAME, so crash-consistency tests stop it at exact places instead of racing a timer: a step's
// boundaries (step:PHASE:running, step:PHASE:ended, step:PHASE:journaled), a playbook's acting
// host call (action:PHASE), an incident's first row (incident:opened), an attempt's number
// journaled before any of its steps (attempt:journaled), a service's process spawned but not yet
// recorded (service:spawned) and the store's file writes (store_write; store_write_torn writes
// half the bytes first). docs/reliability.md
// lists them. Release builds compile every point away.

#include <string_view>

namespace guardian {

#ifdef GUARDIAN_TEST_HOOKS
// Counts a pass of NAME (its parts joined with ':') when it is the armed point; true on the
// N-th, when the caller is to die (CrashNow) once it has done what the point stands for.
// Cheap when nothing is armed.
bool CrashPointDue(std::string_view a, std::string_view b = {}, std::string_view c = {});
[[noreturn]] void CrashNow();
inline void CrashPoint(std::string_view a, std::string_view b = {}, std::string_view c = {}) {
  if (CrashPointDue(a, b, c)) CrashNow();
}
#else
inline bool CrashPointDue(std::string_view, std::string_view = {}, std::string_view = {}) {
  return false;
}
inline void CrashNow() {}
inline void CrashPoint(std::string_view, std::string_view = {}, std::string_view = {}) {}
#endif

}  // namespace guardian
