// guardian.log.info|warn|error(message): lines that go to the daemon log and the step message.
#include <string>

#include "plugins/host_api.h"
#include "plugins/playbook_run.h"

namespace guardian {
namespace {

int LogAt(lua_State* L, const char* level, const char* call) {
  lua_settop(L, 1);
  size_t len = 0;
  const char* msg = luaL_tolstring(L, 1, &len);
  std::string line(msg, len);
  lua_replace(L, 1);  // the text as logged is what a dry run records
  PlaybookRun* run = PlaybookRun::From(L);
  // A log line is no action: a dry run records it, so it shows among the actions, and logs
  // it; a real run keeps it out of the audit trail.
  if (run->dry_run()) run->RecordAction(L, call, 1);
  if (run->services().log) run->services().log(level, line);
  return 0;
}
int Info(lua_State* L) { return LogAt(L, "info", "guardian.log.info"); }
int Warn(lua_State* L) { return LogAt(L, "warn", "guardian.log.warn"); }
int Error(lua_State* L) { return LogAt(L, "error", "guardian.log.error"); }

void Install(lua_State* L) {
  static const luaL_Reg fns[] = {
      {"info", Info}, {"warn", Warn}, {"error", Error}, {nullptr, nullptr}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "log");
}

}  // namespace

GUARDIAN_HOST_MODULE(log, "log", Install);

}  // namespace guardian
