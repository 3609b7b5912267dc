// PlaybookRun on a real libuv loop: phases run as coroutines, waits yield instead of blocking,
// deadlines cancel waits, the path policy and argv-only processes hold, and every handle is
// closed when the runs are gone.
#include "plugins/playbook_run.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/lua/run_fixture.h"

using namespace guardian;
namespace fs = std::filesystem;

namespace {

using Fixture = RunFixture;

}  // namespace

TEST_CASE("a phase's string result is its message; ctx carries the incident and its evidence") {
  Fixture f;
  f.evidence = "file missing";
  auto run =
      f.Run(f.Playbook("remediate = function(ctx) return 'ok for ' .. ctx.check .. '#' .. "
                       "ctx.incident .. ': ' .. ctx.evidence end"));
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK(s.ok());
  CHECK(msg == "ok for app#7: file missing");
  auto [s2, msg2] = f.Phase(*run, "backup");  // not defined: skipped, ok
  CHECK(s2.ok());
  CHECK(msg2 == "not defined by the playbook");
}

TEST_CASE("a Lua error fails the phase with file and line") {
  Fixture f;
  auto run = f.Run(f.Playbook("remediate = function(ctx)\n error('cannot fix') end"));
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_FALSE(s.ok());
  CHECK(msg.find("t.lua:3: cannot fix") != std::string::npos);
}

TEST_CASE("ten sleeping playbooks wait at the same time without blocking the loop") {
  Fixture f;
  auto pb = f.Playbook("remediate = function(ctx) guardian.sleep(200) return 'slept' end");
  std::vector<std::unique_ptr<PlaybookRun>> runs;
  int finished = 0;
  for (int i = 0; i < 10; ++i) {
    runs.push_back(f.Run(pb));
    runs.back()->RunPhase("remediate", 1, [&](Status s, std::string m) {
      CHECK(s.ok());
      CHECK(m == "slept");
      ++finished;
    });
  }
  // A timer halfway through the sleeps finds the loop free and all ten still waiting.
  int running_midway = -1;
  Timer probe(&f.loop);
  probe.Start(100, [&] {
    running_midway = 0;
    for (auto& r : runs) running_midway += r->running();
  });
  while (finished < 10 && uv_run(&f.loop, UV_RUN_ONCE)) {
  }
  CHECK(running_midway == 10);
  CHECK(finished == 10);
}

TEST_CASE("the phase deadline cancels a wait and fails the phase") {
  Fixture f;
  PlaybookLimits limits;
  limits.phase_timeout_ms = 100;
  auto run = f.Run(f.Playbook("remediate = function(ctx) guardian.sleep(60000) return 'never' end"),
                   limits);
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_FALSE(s.ok());
  CHECK(msg.find("deadline") != std::string::npos);
  // The cancelled sleep's timer must not keep the loop alive for a minute: the fixture's
  // final uv_run returns at once and the loop closes.
}

TEST_CASE("an endless loop in a phase is stopped by the instruction budget") {
  Fixture f;
  PlaybookLimits limits;
  limits.instructions = 100000;
  auto run = f.Run(f.Playbook("remediate = function(ctx) while true do pcall(function() while true "
                              "do end end) end end"),
                   limits);
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_FALSE(s.ok());
  CHECK(msg.find("instruction budget exceeded") != std::string::npos);
}

TEST_CASE("sandbox refusals reach the phase result") {
  Fixture f;
  auto run = f.Run(f.Playbook("remediate = function(ctx) os.execute('touch /tmp/pwned') end"));
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_FALSE(s.ok());
  CHECK(msg.find("'os.execute' is not available in the playbook sandbox") != std::string::npos);
}

TEST_CASE("files: writes inside the declared folders work, outside raise, symlinks cannot escape") {
  Fixture f;
  fs::create_directories(f.dir / "outside");
  fs::create_symlink(f.dir / "outside", f.dir / "app" / "link");
  std::string app = (f.dir / "app").string();
  std::string body =
      "remediate = function(ctx)\n"
      "  assert(guardian.fs.write('" +
      app +
      "/app.yaml', 'a: 1\\n'))\n"
      "  assert(guardian.fs.copy('" +
      app +
      "/app.yaml', ctx.state_dir .. '/copy.yaml'))\n"
      "  local text = guardian.fs.read(ctx.state_dir .. '/copy.yaml')\n"
      "  assert(guardian.fs.check_yaml('" +
      app +
      "/app.yaml', {'a'}))\n"
      "  local ok, why = guardian.fs.check_yaml('" +
      app +
      "/app.yaml', {'b.c'})\n"
      "  return text .. '|' .. tostring(ok) .. '|' .. why\n"
      "end,\n"
      "backup = function(ctx) guardian.fs.write('/etc/guardian-test-pwned', 'x') end,\n"
      "verify = function(ctx) guardian.fs.write('" +
      app +
      "/link/escaped', 'x') end,\n"
      "rollback = function(ctx) guardian.fs.read('" +
      app + "/../outside/x') end,\n";
  auto run = f.Run(f.Playbook(body));
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_MESSAGE(s.ok(), msg);
  CHECK(msg == "a: 1\n|nil|required key 'b.c' is missing");
  CHECK(fs::exists(f.dir / "state" / "copy.yaml"));

  auto [s1, m1] = f.Phase(*run, "backup");
  CHECK_FALSE(s1.ok());
  CHECK(m1.find("outside what check 'app' declares") != std::string::npos);
  CHECK_FALSE(fs::exists("/etc/guardian-test-pwned"));

  auto [s2, m2] = f.Phase(*run, "verify");
  CHECK_FALSE(s2.ok());
  CHECK(m2.find("outside") != std::string::npos);
  CHECK_FALSE(fs::exists(f.dir / "outside" / "escaped"));

  auto [s3, m3] = f.Phase(*run, "rollback");
  CHECK_FALSE(s3.ok());
  CHECK(m3.find("outside") != std::string::npos);
}

TEST_CASE("processes run as argv only, with output and exit status") {
  Fixture f;
  auto run =
      f.Run(f.Playbook("remediate = function(ctx)\n"
                       "  local r = guardian.proc.run({'/bin/echo', 'hello; rm -rf /'})\n"
                       "  local bad, err = guardian.proc.run({'/nonexistent/prog'})\n"
                       "  local fail = guardian.proc.run({'/bin/false'})\n"
                       "  return r.stdout .. '|' .. r.code .. '|' .. tostring(bad) .. '|' .. err "
                       ".. '|' .. fail.code\n"
                       "end,\n"
                       "backup = function(ctx) guardian.proc.run('rm -rf /tmp/x') end,\n"
                       "verify = function(ctx) local r = guardian.proc.run({'/bin/sleep', '10'}, "
                       "{timeout_ms = 100}) "
                       "return tostring(r.timed_out) .. '|' .. r.signal end,\n"));
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_MESSAGE(s.ok(), msg);
  // The argument reached echo as one string: no shell split or ran it.
  CHECK(msg.rfind("hello; rm -rf /\n|0|nil|cannot start '/nonexistent/prog'", 0) == 0);
  CHECK(msg.substr(msg.size() - 2) == "|1");

  auto [s1, m1] = f.Phase(*run, "backup");
  CHECK_FALSE(s1.ok());
  CHECK(m1.find("table expected") != std::string::npos);

  auto [s2, m2] = f.Phase(*run, "verify");
  CHECK_MESSAGE(s2.ok(), m2);
  CHECK(m2 == "true|15");  // SIGTERM after the timeout
}

TEST_CASE("state values, probe and log go through the run's services") {
  Fixture f;
  auto run =
      f.Run(f.Playbook("remediate = function(ctx)\n"
                       "  guardian.state.set('k', 42)\n"
                       "  guardian.log.warn('about to probe')\n"
                       "  local ok, why = guardian.probe()\n"
                       "  return guardian.state.get('k') .. '|' .. tostring(ok) .. '|' .. why .. "
                       "'|' .. tostring(guardian.state.get('none'))\n"
                       "end"));
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_MESSAGE(s.ok(), msg);
  CHECK(msg == "42|false|still broken|nil");
  CHECK(f.values["k"] == "42");
  CHECK(f.probes == 1);
  REQUIRE(f.logs.size() == 1);
  CHECK(f.logs[0] == "warn: about to probe");
}

TEST_CASE(
    "probe_until re-probes until the check passes, or answers the last failure at the "
    "deadline") {
  Fixture f;
  f.pass_from = 3;
  auto pb = f.Playbook(
      "verify = function(ctx)\n"
      "  local ok, why = guardian.probe_until(60000, 5)\n"
      "  return tostring(ok) .. '|' .. why\n"
      "end,\n"
      "remediate = function(ctx)\n"
      "  local ok, why = guardian.probe_until(30)\n"
      "  return tostring(ok) .. '|' .. why\n"
      "end,\n"
      "backup = function(ctx) guardian.probe_until(100, 0) end,\n"
      "rollback = function(ctx) guardian.probe_until(-1) end,\n");
  auto run = f.Run(pb);
  auto [s, msg] = f.Phase(*run, "verify");
  CHECK_MESSAGE(s.ok(), msg);
  CHECK(msg == "true|fixed");
  CHECK(f.probes == 3);  // two failures, then the pass; no probe after it

  f.pass_from = 0;
  f.probes = 0;
  auto [s1, m1] = f.Phase(*run, "remediate");
  CHECK_MESSAGE(s1.ok(), m1);
  CHECK(m1 == "false|still broken");
  CHECK(f.probes >= 2);  // 30 ms of 10 ms waits: more than the first probe

  auto [s2, m2] = f.Phase(*run, "backup");
  CHECK_FALSE(s2.ok());
  CHECK(m2.find("guardian.probe_until: every_ms must be >= 1") != std::string::npos);
  auto [s3, m3] = f.Phase(*run, "rollback");
  CHECK_FALSE(s3.ok());
  CHECK(m3.find("guardian.probe_until: timeout_ms must be >= 0") != std::string::npos);

  // A dry run probes once and does not wait.
  f.probes = 0;
  auto dry = f.Run(pb, PlaybookLimits{}, true);
  auto [s4, m4] = f.Phase(*dry, "remediate");
  CHECK_MESSAGE(s4.ok(), m4);
  CHECK(m4 == "false|still broken");
  CHECK(f.probes == 1);
}

TEST_CASE("host waits are refused outside a phase (at load time)") {
  Fixture f;
  fs::path p = f.dir / "load.lua";
  std::ofstream(p) << "guardian.sleep(1)\nreturn { name = 'x', mode = 'missing_config', remediate "
                      "= function() end }\n";
  PlaybookInfo info;
  Status s = PlaybookLibrary::Inspect(p.string(), PlaybookLimits{}, &info);
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("load.lua:1:") != std::string::npos);
}

TEST_CASE("removing or writing a symlink acts on the link, never on a target outside the roots") {
  Fixture f;
  fs::create_directories(f.dir / "outside");
  std::ofstream(f.dir / "outside" / "precious") << "keep me";
  fs::create_symlink(f.dir / "outside" / "precious", f.dir / "app" / "link");
  std::string link = (f.dir / "app" / "link").string();
  auto run =
      f.Run(f.Playbook("remediate = function(ctx)\n"
                       "  local st = guardian.fs.stat('" +
                       link +
                       "')\n"
                       "  assert(guardian.fs.remove('" +
                       link +
                       "'))\n"
                       "  return st.type\n"
                       "end,\n"
                       "verify = function(ctx) return guardian.fs.read('" +
                       link + "') end,\n"));
  auto [s0, m0] = f.Phase(*run, "verify");  // reading follows the link: its target is outside
  CHECK_FALSE(s0.ok());
  CHECK(m0.find("outside") != std::string::npos);
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_MESSAGE(s.ok(), msg);
  CHECK(msg == "link");
  CHECK_FALSE(fs::exists(fs::symlink_status(link)));
  CHECK(fs::exists(f.dir / "outside" / "precious"));
}

TEST_CASE("a wait result larger than the memory cap fails the phase instead of the daemon") {
  Fixture f;
  std::string big = (f.dir / "app" / "big.txt").string();
  std::ofstream(big) << std::string(3 << 20, 'x');
  PlaybookLimits limits;
  limits.memory_bytes = 2 << 20;
  auto run = f.Run(f.Playbook("remediate = function(ctx) local t = guardian.fs.read('" + big +
                              "') return 'read ' .. #t end"),
                   limits);
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_FALSE(s.ok());
  CHECK(msg.find("not enough memory") != std::string::npos);
}
