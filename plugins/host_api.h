#pragma once
// The host API playbooks call, `guardian.*`. Each namespace is one file in plugins/ that
// registers an installer (GUARDIAN_HOST_MODULE); PlaybookRun installs them all into a table
// that the sandbox then makes read-only. See docs/playbook-api.md for the functions.
//
// Host functions run on the loop thread inside a playbook coroutine. A function that waits
// (sleep, copy, spawn, probe) calls PlaybookRun::Await, which yields the coroutine; the run is
// resumed from the libuv callback, so a waiting playbook holds up nothing else.

#include <functional>
#include <lua.hpp>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/observation.h"
#include "daemon/status.h"

namespace guardian {

class Supervisor;
class HttpClient;

// What a run may reach of the daemon, provided by the incident engine.
struct RunServices {
  // The services guardiand runs (guardian.service acts on the check's params.service only);
  // null when there are none (tests).
  Supervisor* supervisor = nullptr;
  // The HTTP client guardian.http uses; null when there is none (tests).
  HttpClient* http = nullptr;
  // Re-runs the check's detector; `done` gets the observation on the loop thread.
  std::function<void(std::function<void(Observation)>)> probe;
  // Per-check persisted values (guardian.state.get/set).
  std::function<std::string(const std::string& key)> get_value;
  // Refuses (not ok) when the check already keeps too many values.
  std::function<Status(const std::string& key, const std::string& value)> set_value;
  // Lines logged by the playbook, for the step messages and the daemon log.
  using LogFn = std::function<void(const std::string& level, const std::string& line)>;
  LogFn log;
  // Dry run (`guardian run CHECK --dry-run`): host functions that act record the call
  // (PlaybookRun::recorded) and answer as success would, acting on nothing; reads, probe and
  // log run for real. set_value is never called: values set stay in the run, for its own gets.
  bool dry_run = false;
  // Outside a dry run, each host call that acts ("remediate: guardian.service.restart()") for
  // the audit trail; may be empty (tests).
  std::function<void(const std::string& action)> audit;
};

struct HostModule {
  const char* name;
  // Adds the namespace's functions to the table on top of the stack.
  void (*install)(lua_State* L);
};

class HostModules {
 public:
  static std::vector<HostModule>& All();
  static bool Add(HostModule m);
};

#define GUARDIAN_HOST_MODULE(ident, name, fn)                  \
  [[maybe_unused]] static const bool ident##_host_registered = \
      ::guardian::HostModules::Add({name, fn})

// Helpers for host functions.
// Reads a Lua array of strings at `idx` (for argv and key lists); raises on anything else.
std::vector<std::string> CheckStringArray(lua_State* L, int idx, const char* what);
// Pushes a C++ string map as a Lua table.
void PushStringMap(lua_State* L, const std::map<std::string, std::string>& m);
// Pushes JSON as Lua values: objects and arrays become tables, null becomes nil.
void PushJson(lua_State* L, const nlohmann::json& j);
// Reads the Lua value at `idx` as JSON: a table with keys 1..n only (or none) is an array,
// one with string keys an object. Raises on functions, cycles, mixed keys or nesting past 32.
nlohmann::json LuaToJson(lua_State* L, int idx, const char* what);

}  // namespace guardian
