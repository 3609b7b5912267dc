// guardian.service against a real supervised process that speaks the status/flags protocol:
// a small Python service that reports its pid, readiness and the flags seq it applied.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <fstream>

#include "tests/lua/run_fixture.h"

namespace guardian {
namespace {
namespace fs = std::filesystem;

// Writes status.json every 20 ms with the seq of flags.json; touches usr1.marker on SIGUSR1.
constexpr const char* kService = R"PY(
import json, os, signal, sys, time
run = sys.argv[1]
signal.signal(signal.SIGUSR1, lambda *_: open(os.path.join(run, "usr1.marker"), "w").close())
while True:
    seq = 0
    try:
        seq = json.load(open(os.path.join(run, "flags.json"))).get("seq", 0)
    except Exception:
        pass
    tmp = os.path.join(run, "status.json.tmp")
    with open(tmp, "w") as f:
        json.dump({"pid": os.getpid(), "state": "ready", "flags": {"seq": seq}}, f)
    os.replace(tmp, os.path.join(run, "status.json"))
    time.sleep(0.02)
)PY";

struct ServiceRunFixture : RunFixture {
  std::unique_ptr<Supervisor> sup;
  std::string run_dir;

  ServiceRunFixture() {
    run_dir = (dir / "run").string();
    fs::create_directories(run_dir);
    std::ofstream(dir / "svc.py") << kService;
    sup =
        std::make_unique<Supervisor>(&loop, (dir / "gstate").string(), SystemClock::Get(), nullptr);
    auto config = std::make_shared<Config>();
    config->state_dir = (dir / "gstate").string();
    config->port_registry = (dir / "gstate" / "ports.json").string();
    ServiceConfig s;
    s.name = "svc";
    s.argv = {"python3", (dir / "svc.py").string(), run_dir};
    s.cwd = dir.string();
    s.output = (dir / "svc.log").string();
    s.status_file = run_dir + "/status.json";
    s.flags_file = run_dir + "/flags.json";
    s.stop_grace_ms = 1000;
    config->services = {s};
    bool applied = false;
    sup->Apply(config, [&] { applied = true; });
    while (!applied) uv_run(&loop, UV_RUN_ONCE);
    Service* svc = sup->Find("svc");
    bool ready = false, answered = false;
    svc->WaitReady(10'000, [&](bool r) {
      ready = r;
      answered = true;
    });
    while (!answered) uv_run(&loop, UV_RUN_ONCE);
    REQUIRE(ready);
    supervisor = sup.get();
    service = "svc";
  }
  ~ServiceRunFixture() {
    bool closed = false;
    sup->Close([&] { closed = true; });
    while (!closed) uv_run(&loop, UV_RUN_ONCE);
    sup.reset();
  }
  pid_t Pid() { return sup->Find("svc")->Snapshot().process.pid; }
};

}  // namespace

TEST_CASE("service.info and service.status describe the check's own service") {
  ServiceRunFixture f;
  auto run = f.Run(f.Playbook(R"(remediate = function(ctx)
    local i = guardian.service.info()
    local st = assert(guardian.service.status())
    return i.name .. " " .. i.state .. " " .. i.pid .. " " .. st.state .. " " .. st.pid
  end)"));
  auto [s, msg] = f.Phase(*run, "remediate");
  REQUIRE_MESSAGE(s.ok(), s.message());
  std::string pid = std::to_string(f.Pid());
  CHECK(msg == "svc ready " + pid + " ready " + pid);
}

TEST_CASE("service.memory reads the service's RSS and the system's memory now") {
  ServiceRunFixture f;
  auto run = f.Run(f.Playbook(R"(remediate = function(ctx)
    local m = guardian.service.memory()
    return m.pid .. " " .. tostring(m.rss_bytes > 1024 * 1024) .. " " ..
      tostring(m.mem_available_bytes <= m.mem_total_bytes) .. " " .. tostring(m.oom_kills)
  end)"));
  auto [s, msg] = f.Phase(*run, "remediate");
  REQUIRE_MESSAGE(s.ok(), s.message());
  // A python interpreter holds more than 1 MiB; no cgroup configured, so no OOM count.
  CHECK(msg == std::to_string(f.Pid()) + " true true nil");
}

TEST_CASE("service.set_flags merges, bumps seq and waits until the service applied it") {
  ServiceRunFixture f;
  auto run = f.Run(f.Playbook(R"(remediate = function(ctx)
    local a = assert(guardian.service.set_flags({low_memory = true, skip_chunks = {"search"}}))
    local b = assert(guardian.service.set_flags({offline_mode = true, skip_chunks = {}}))
    local fl = guardian.service.flags()
    return a .. " " .. b .. " " .. tostring(fl.low_memory) .. " " .. tostring(fl.offline_mode)
      .. " " .. #fl.skip_chunks .. " " .. guardian.service.status().flags.seq
  end)"));
  auto [s, msg] = f.Phase(*run, "remediate");
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(msg == "1 2 true true 0 2");
  std::ifstream in(f.run_dir + "/flags.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.find("\"skip_chunks\": []") != std::string::npos);
  CHECK(text.find("\"seq\": 2") != std::string::npos);
}

TEST_CASE("service.signal reaches the service; signals outside the list raise") {
  ServiceRunFixture f;
  // The marker is outside the check's paths, so this test looks for it, not the playbook.
  auto run2 = f.Run(f.Playbook(R"(remediate = function(ctx)
    assert(guardian.service.signal("USR1"))
    guardian.sleep(300)
  end,
  verify = function(ctx) guardian.service.signal("KILL") end)"));
  auto [s, msg] = f.Phase(*run2, "remediate");
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(fs::exists(f.run_dir + "/usr1.marker"));
  auto [v, vmsg] = f.Phase(*run2, "verify");
  CHECK_FALSE(v.ok());
  CHECK(v.message().find("'KILL' is not one of HUP, USR1, USR2, TERM, INT") != std::string::npos);
}

TEST_CASE("service.restart starts a new process and can wait for it to be ready") {
  ServiceRunFixture f;
  pid_t before = f.Pid();
  auto run = f.Run(f.Playbook(R"(remediate = function(ctx)
    assert(guardian.service.restart({wait_ready_ms = 10000, reason = "test"}))
    local i = guardian.service.info()
    return i.state .. " " .. i.starts .. " " .. i.pid
  end)"));
  auto [s, msg] = f.Phase(*run, "remediate");
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(f.Pid() != before);
  CHECK(msg == "ready 2 " + std::to_string(f.Pid()));
}

TEST_CASE("in a dry run restart and set_flags are recorded, not done") {
  ServiceRunFixture f;
  pid_t before = f.Pid();
  auto run = f.Run(f.Playbook(R"(remediate = function(ctx)
    assert(guardian.service.restart({wait_ready_ms = 1000}))
    assert(guardian.service.set_flags({low_memory = true}))
  end)"),
                   PlaybookLimits{}, /*dry_run=*/true);
  auto [s, msg] = f.Phase(*run, "remediate");
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(f.Pid() == before);
  CHECK_FALSE(fs::exists(f.run_dir + "/flags.json"));
  REQUIRE(run->recorded().size() == 2);
  CHECK(run->recorded()[0].call == "guardian.service.restart");
  CHECK(run->recorded()[1].call == "guardian.service.set_flags");
}

TEST_CASE(
    "service.stop_stale spares a pid whose start time differs, and stops the one that matches") {
  ServiceRunFixture f;
  // A stale instance of the service's own program (same executable), not supervised.
  pid_t stale = ::fork();
  if (stale == 0) {
    ::execl("/usr/bin/python3", "python3", "-c", "import time; time.sleep(60)", nullptr);
    ::_exit(127);
  }
  REQUIRE(stale > 0);
  std::string exe = f.sup->Find("svc")->Snapshot().exe;
  ProcessIdentity id;
  for (int i = 0; i < 500 && !(ReadProcessIdentity(stale, &id).ok() && id.exe == exe); ++i)
    ::usleep(10'000);
  REQUIRE(id.exe == exe);
  std::string pid = std::to_string(id.pid);
  std::string ticks = std::to_string(id.start_ticks);
  // The same pid with another start time is another process (the pid was reused): untouched.
  auto run =
      f.Run(f.Playbook("remediate = function(ctx)\n"
                       "  assert(guardian.service.stop_stale(" +
                       pid + ", " + ticks +
                       " + 1, {grace_ms = 200}))\n"
                       "  guardian.sleep(200)\n"
                       "end,\n"
                       "verify = function(ctx)\n"
                       "  assert(guardian.service.stop_stale(" +
                       pid + ", " + ticks +
                       ", {grace_ms = 200}))\n"
                       "end"));
  auto [s, msg] = f.Phase(*run, "remediate");
  REQUIRE_MESSAGE(s.ok(), s.message());
  int status = 0;
  CHECK(::waitpid(stale, &status, WNOHANG) == 0);  // still running
  auto [v, vmsg] = f.Phase(*run, "verify");
  CHECK_MESSAGE(v.ok(), v.message());
  // Ended by its SIGTERM; the supervisor (a subreaper in this process) may have reaped it first.
  pid_t reaped = ::waitpid(stale, &status, 0);
  if (reaped == stale) {
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGTERM);
  } else {
    CHECK(errno == ECHILD);
  }
  CHECK(::kill(stale, 0) != 0);
}

TEST_CASE("a check that names no service cannot use guardian.service") {
  RunFixture f;
  auto run = f.Run(f.Playbook("remediate = function(ctx) guardian.service.restart() end"));
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("names no service (params.service)") != std::string::npos);
}

}  // namespace guardian
