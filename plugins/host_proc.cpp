// guardian.proc.run(argv, opts): run a program as an argv vector, never through a shell, and
// only a program the check's policy allows (daemon/program_policy.h).
#include <algorithm>
#include <optional>

#include "daemon/child_process.h"
#include "daemon/program_policy.h"
#include "plugins/host_api.h"
#include "plugins/playbook_run.h"

namespace guardian {
namespace {

int PushResult(lua_State* L, const ChildResult& r) {
  if (!r.status.ok() && !r.timed_out) {
    // I/O failures are values, not errors (see docs/playbook-api.md).
    lua_pushnil(L);
    lua_pushstring(L, r.status.message().c_str());
    return 2;
  }
  lua_newtable(L);
  lua_pushinteger(L, r.exit_code);
  lua_setfield(L, -2, "code");
  lua_pushinteger(L, r.term_signal);
  lua_setfield(L, -2, "signal");
  lua_pushlstring(L, r.out.data(), r.out.size());
  lua_setfield(L, -2, "stdout");
  lua_pushlstring(L, r.err.data(), r.err.size());
  lua_setfield(L, -2, "stderr");
  lua_pushboolean(L, r.timed_out);
  lua_setfield(L, -2, "timed_out");
  return 1;
}

// The dry-run gate of guardian.proc: the program is not started and the call answers a clean
// exit with no output, so the playbook carries on as after a success. Empty outside a dry run.
std::optional<int> DryRun(lua_State* L) {
  PlaybookRun* run = PlaybookRun::From(L);
  run->CheckCanWait(L, "guardian.proc.run");  // before recording: such a call never happens
  int nargs = std::min(lua_gettop(L), 2);     // argv and opts
  if (!run->RecordAction(L, "guardian.proc.run", nargs,
                         "not started; answered code 0 with empty output"))
    return std::nullopt;
  return run->AwaitNothing(L, "guardian.proc.run", [](lua_State* L) {
    ChildResult r;
    r.exit_code = 0;
    return PushResult(L, r);
  });
}

// guardian.proc.run({"/bin/prog", "arg"}, {timeout_ms = 5000, cwd = "/dir"})
//   -> { code = N, signal = N, stdout = "...", stderr = "...", timed_out = bool }
//   or nil, message when the program cannot be started.
int Run(lua_State* L) {
  ChildOptions opts;
  opts.argv = CheckStringArray(L, 1, "argv");
  if (opts.argv.empty()) return luaL_error(L, "guardian.proc.run: argv must not be empty");
  opts.timeout_ms = 30'000;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "timeout_ms");
    if (!lua_isnil(L, -1)) opts.timeout_ms = luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 2, "cwd");
    if (!lua_isnil(L, -1)) opts.cwd = luaL_checkstring(L, -1);
    lua_pop(L, 1);
  }
  PlaybookRun* run = PlaybookRun::From(L);
  // The policy is checked before the dry-run gate, so a dry run shows the refusal too.
  std::string file;
  Status allowed = ResolveProgram(opts.argv[0], run->check().env, run->check().programs, &file);
  if (allowed.ok()) {
    opts.file = file;  // runs the very file checked, whatever PATH holds by then
  } else if (allowed.code() != Status::Code::kNotFound) {
    return luaL_error(L, "guardian.proc.run: %s", allowed.message().c_str());
  }
  // Not found: ChildProcess reports it as any start that fails ("cannot start 'x': ...").
  if (auto n = DryRun(L)) return *n;
  // Whatever the playbook starts runs as its check says, never with guardiand's environment.
  opts.run_as = run->check().run_as;
  opts.env = run->check().env;
  opts.env["GUARDIAN_CHECK"] = run->check().id;
  return run->Await(L, "guardian.proc.run", [run, opts](PlaybookRun::Resume resume) {
    ChildProcess* child = nullptr;
    auto alive = std::make_shared<bool>(true);
    ChildProcess::Run(
        run->loop(), opts,
        [resume, alive](ChildResult r) {
          *alive = false;
          resume([r](lua_State* L) { return PushResult(L, r); });
        },
        &child);
    // Cancelling (phase deadline, shutdown) stops the child; its exit is still reaped.
    return std::function<void()>([child, alive] {
      if (*alive) child->Kill();
    });
  });
}

void Install(lua_State* L) {
  static const luaL_Reg fns[] = {{"run", Run}, {nullptr, nullptr}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "proc");
}

}  // namespace

GUARDIAN_HOST_MODULE(proc, "proc", Install);

}  // namespace guardian
