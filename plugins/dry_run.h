#pragma once
// Dry run: what a playbook run would have done, as recorded by its host functions instead of
// doing it (RunServices::dry_run; see "Dry run" in docs/playbook-api.md).

#include <lua.hpp>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace guardian {

struct DryRunAction {
  std::string phase;  // backup, remediate, verify or rollback
  std::string call;   // guardian.fs.copy
  std::string args;   // "/a/b.yaml", "/x/y" (as the playbook passed them, shortened)
  std::string note;   // what the dry run answered instead, when the call does not say it
};

// `guardian.fs.copy("/a/b.yaml", "/x/y")`, and ` -- note` when there is one.
std::string DryRunText(const DryRunAction& a);
// {"phase", "call", "args", "note"}; found by nlohmann::json's ADL, so `json j = run.recorded()`.
void to_json(nlohmann::json& j, const DryRunAction& a);
nlohmann::json DryRunJson(const std::vector<DryRunAction>& actions);

// Stack slots first..last as short Lua literals separated by ", ": long strings are cut, tables
// show their first entries. Reads raw, so no playbook code (metamethods) runs.
std::string FormatLuaArgs(lua_State* L, int first, int last);

}  // namespace guardian
