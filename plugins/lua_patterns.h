#pragma once
// Bounded Lua patterns: string.find, string.match, string.gmatch and string.gsub for the playbook
// sandbox. Lua's own matcher runs in C, where the instruction hook never fires, so one
// backtracking pattern on a long subject (".-.-.-.-x" on 100 KB) could hold the daemon's loop for
// hours. This is a separate implementation of the same pattern language (Lua 5.4 semantics:
// classes, sets, quantifiers, captures, %b, %f, back-references, anchors; also plain find) that
// counts its work in steps and hands them to a charge function, which raises once the budget is
// spent. A step is one attempt of one pattern item at one subject position (a set costs one
// more per 8 bytes of it); bulk scans and compares cost one per 16 bytes.

#include <cstddef>
#include <cstdint>
#include <lua.hpp>

namespace guardian {

// Longer patterns are refused. No playbook needs one, and each step re-reads the item it tries.
constexpr size_t kMaxPatternBytes = 4096;

// Spends `steps` of the caller's budget; raises a Lua error (and does not return) once it is
// gone. `function` names the caller ("string.find") for the message.
using PatternCharge = void (*)(lua_State* L, int64_t steps, const char* function);

// Replaces find, match, gmatch and gsub in the table at `lib` with the bounded versions, which
// call `*charge` (a pointer to storage that outlives the state) as they go.
void InstallBoundedPatterns(lua_State* L, int lib, const PatternCharge* charge);

}  // namespace guardian
