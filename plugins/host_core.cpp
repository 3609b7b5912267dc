// guardian.sleep(ms), guardian.probe(), guardian.now(): waiting and re-checking.
#include <optional>
#include <string>

#include "daemon/clock.h"
#include "daemon/timer.h"
#include "plugins/host_api.h"
#include "plugins/playbook_run.h"

namespace guardian {
namespace {

// The dry-run gate of the core functions. Only sleep acts (it spends the incident's time): a
// dry run records it and answers at once. probe and now only observe, so they run for real.
std::optional<int> DryRunSleep(lua_State* L, lua_Integer ms) {
  PlaybookRun* run = PlaybookRun::From(L);
  run->CheckCanWait(L, "guardian.sleep");  // before recording: such a call never happens
  if (!run->RecordIfDryRun(L, "guardian.sleep", 1,
                           "answered at once instead of waiting " + std::to_string(ms) + " ms"))
    return std::nullopt;
  return run->AwaitNothing(L, "guardian.sleep", [](lua_State*) { return 0; });
}

// guardian.sleep(ms): yields the phase for `ms` milliseconds.
int Sleep(lua_State* L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  if (ms < 0) return luaL_error(L, "guardian.sleep: ms must be >= 0");
  if (auto n = DryRunSleep(L, ms)) return *n;
  PlaybookRun* run = PlaybookRun::From(L);
  return run->Await(L, "guardian.sleep", [run, ms](PlaybookRun::Resume resume) {
    // Deleted by whichever comes first: the timer firing or the wait being cancelled.
    auto* timer = new Timer(run->loop());
    auto finished = std::make_shared<bool>(false);
    timer->Start(ms, [timer, resume, finished] {
      *finished = true;
      auto r = resume;
      delete timer;  // Timer allows this from its own callback
      r([](lua_State*) { return 0; });
    });
    return std::function<void()>([timer, finished] {
      if (*finished) return;
      *finished = true;
      delete timer;
    });
  });
}

// guardian.probe() -> ok, evidence: re-runs the check's detector now.
int Probe(lua_State* L) {
  PlaybookRun* run = PlaybookRun::From(L);
  return run->Await(L, "guardian.probe", [run](PlaybookRun::Resume resume) {
    run->services().probe([resume](Observation obs) {
      resume([obs](lua_State* L) {
        lua_pushboolean(L, obs.ok());
        lua_pushlstring(L, obs.evidence.data(), obs.evidence.size());
        return 2;
      });
    });
    return std::function<void()>();
  });
}

// guardian.now() -> wall-clock milliseconds since the epoch.
int Now(lua_State* L) {
  lua_pushinteger(L, SystemClock::Get()->WallMs());
  return 1;
}

void Install(lua_State* L) {
  lua_pushcfunction(L, Sleep);
  lua_setfield(L, -2, "sleep");
  lua_pushcfunction(L, Probe);
  lua_setfield(L, -2, "probe");
  lua_pushcfunction(L, Now);
  lua_setfield(L, -2, "now");
}

}  // namespace

GUARDIAN_HOST_MODULE(core, "core", Install);

}  // namespace guardian
