// guardian.log.info|warn|error(message): lines that go to the daemon log and the step message.
#include "plugins/host_api.h"
#include "plugins/playbook_run.h"

namespace guardian {
namespace {

int LogAt(lua_State* L, const char* level) {
  size_t len = 0;
  const char* msg = luaL_tolstring(L, 1, &len);
  PlaybookRun* run = PlaybookRun::From(L);
  if (run->services().log) run->services().log(level, std::string(msg, len));
  return 0;
}
int Info(lua_State* L) { return LogAt(L, "info"); }
int Warn(lua_State* L) { return LogAt(L, "warn"); }
int Error(lua_State* L) { return LogAt(L, "error"); }

void Install(lua_State* L) {
  static const luaL_Reg fns[] = {
      {"info", Info}, {"warn", Warn}, {"error", Error}, {nullptr, nullptr}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "log");
}

}  // namespace

GUARDIAN_HOST_MODULE(log, "log", Install);

}  // namespace guardian
