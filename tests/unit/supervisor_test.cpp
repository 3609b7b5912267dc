// The supervisor with real processes on a real loop: spawn, exit, backoff, stop of a whole
// process group, orphans, readiness from a status file, adoption after a restart.
#include "daemon/supervisor.h"

#include <doctest/doctest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "daemon/timer.h"

namespace guardian {
namespace {
namespace fs = std::filesystem;

bool Alive(pid_t pid) {
  ProcessIdentity id;
  return ReadProcessIdentity(pid, &id).ok();  // a zombie counts as gone
}

struct SupervisorFixture {
  uv_loop_t loop{};
  fs::path dir;
  std::vector<std::pair<std::string, ServiceEvent>> events;
  std::unique_ptr<Supervisor> sup;

  SupervisorFixture() {
    char tmpl[] = "/tmp/guardian-supervisor-XXXXXX";
    dir = mkdtemp(tmpl);
    uv_loop_init(&loop);
    sup = NewSupervisor();
  }
  ~SupervisorFixture() {
    Close();
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
    fs::remove_all(dir);
  }

  std::unique_ptr<Supervisor> NewSupervisor() {
    return std::make_unique<Supervisor>(
        &loop, dir.string(), SystemClock::Get(),
        [this](const Service& s, const ServiceEvent& e) { events.emplace_back(s.name(), e); });
  }

  void Close() {
    if (!sup) return;
    bool closed = false;
    sup->Close([&] { closed = true; });
    RunUntil([&] { return closed; }, 10'000);
    sup.reset();
  }

  ServiceConfig Svc(const std::string& name, std::vector<std::string> argv) {
    ServiceConfig s;
    s.name = name;
    s.argv = std::move(argv);
    s.cwd = dir.string();
    s.output = (dir / (name + ".log")).string();
    s.backoff_base_ms = 50;
    s.backoff_max_ms = 400;
    s.healthy_after_ms = 10'000;
    s.stop_grace_ms = 300;
    return s;
  }

  void Apply(std::vector<ServiceConfig> services) {
    auto config = std::make_shared<Config>();
    config->state_dir = dir.string();
    config->port_registry = (dir / "ports.json").string();
    config->services = std::move(services);
    bool applied = false;
    sup->Apply(config, [&] { applied = true; });
    REQUIRE(RunUntil([&] { return applied; }, 5000));
  }

  bool RunUntil(const std::function<bool()>& done, int64_t timeout_ms) {
    bool timed_out = false;
    Timer t(&loop);
    t.Start(timeout_ms, [&] { timed_out = true; });
    while (!done() && !timed_out) uv_run(&loop, UV_RUN_ONCE);
    return done();
  }

  // Runs `script` once as service `name` (no restart within the test), waits for its exit and
  // returns the pid the script wrote to `pidfile` (a process it left behind).
  pid_t LeftBehind(const std::string& name, const std::string& script, const std::string& pidfile) {
    ServiceConfig s = Svc(name, {"/bin/sh", "-c", script});
    s.backoff_base_ms = 60'000;
    Apply({s});
    REQUIRE(RunUntil([&] { return Count("exited") >= 1; }, 5000));
    pid_t pid = 0;
    std::ifstream(dir / pidfile) >> pid;
    REQUIRE(pid > 0);
    return pid;
  }

  // Runs `keep` (stop_on_exit: false) until it is ready and recorded, then closes this
  // supervisor, which leaves it running; returns its identity.
  ProcessIdentity LeaveRunning(const ServiceConfig& keep) {
    Apply({keep});
    REQUIRE(RunUntil([&] { return sup->Find(keep.name)->state() == ServiceState::kReady; }, 5000));
    ProcessIdentity id = sup->Find(keep.name)->Snapshot().process;
    REQUIRE(id.start_ticks > 0);
    REQUIRE(RunUntil([&] { return fs::exists(dir / "services" / (keep.name + ".json")); }, 5000));
    Close();
    REQUIRE(Alive(id.pid));
    return id;
  }

  int Count(const std::string& kind) const {
    int n = 0;
    for (const auto& [name, e] : events) n += e.kind == kind;
    return n;
  }
};

}  // namespace

TEST_CASE("a service that exits is restarted with growing backoff, each time a new process") {
  SupervisorFixture f;
  f.Apply({f.Svc("crasher", {"/bin/sh", "-c", "exit 3"})});
  REQUIRE(f.RunUntil([&] { return f.Count("exited") >= 3; }, 10'000));
  std::set<pid_t> pids;
  for (const auto& [name, e] : f.events) {
    if (e.kind != "exited") continue;
    REQUIRE(e.exit.has_value());
    CHECK(e.exit->code == 3);
    CHECK_FALSE(e.exit->asked);
    pids.insert(e.pid);
  }
  CHECK(pids.size() >= 3);
  ServiceSnapshot s = f.sup->Find("crasher")->Snapshot();
  CHECK(s.failures >= 3);
  CHECK(s.starts >= 3);
  // The third failure waits 4x the base: the detail says so.
  bool saw_200 = false;
  for (const auto& [name, e] : f.events)
    saw_200 |= e.kind == "exited" && e.detail.find("restart 3 in 200 ms") != std::string::npos;
  CHECK(saw_200);
}

TEST_CASE("a stop reaches every process of the service's group") {
  SupervisorFixture f;
  f.Apply({f.Svc("group", {"/bin/sh", "-c", "sleep 60 & sleep 60 & wait"})});
  Service* svc = f.sup->Find("group");
  REQUIRE(f.RunUntil([&] { return svc->state() == ServiceState::kReady; }, 5000));
  pid_t leader = svc->Snapshot().process.pid;
  REQUIRE(leader > 0);
  std::vector<ProcStat> kids;
  REQUIRE(f.RunUntil(
      [&] {
        kids = ListChildren(leader);
        return kids.size() == 2;
      },
      5000));
  for (const auto& k : kids) CHECK(k.pgrp == leader);  // its own process group

  bool stopped = false;
  svc->Stop("test", [&] { stopped = true; });
  REQUIRE(f.RunUntil([&] { return stopped; }, 5000));
  CHECK(svc->state() == ServiceState::kStopped);
  CHECK(f.RunUntil([&] { return !Alive(kids[0].pid) && !Alive(kids[1].pid); }, 5000));
  CHECK(f.Count("exited") == 0);  // an asked-for stop is not a failure
}

TEST_CASE("orphans left by a service that exited are stopped, even one that ignores TERM") {
  SupervisorFixture f;
  // The subshell ignores TERM and execs sleep, which inherits that.
  pid_t orphan = f.LeftBehind(
      "leaver", "(trap '' TERM; exec sleep 61) & echo $! > orphan.pid; sleep 0.3; exit 1",
      "orphan.pid");
  // Re-parented to us (a subreaper), TERM ignored, then KILLed after the grace and reaped.
  CHECK(f.RunUntil([&] { return !Alive(orphan); }, 5000));
  CHECK(f.RunUntil([&] { return !fs::exists("/proc/" + std::to_string(orphan)); }, 5000));
}

TEST_CASE("a helper a service detached into a session of its own is stopped with it") {
  SupervisorFixture f;
  // setsid: the helper leaves the service's process group, but keeps GUARDIAN_SERVICE.
  pid_t helper = f.LeftBehind(
      "detacher", "setsid sleep 62 & echo $! > helper.pid; sleep 0.3; exit 1", "helper.pid");
  CHECK(f.RunUntil([&] { return !Alive(helper); }, 5000));
}

TEST_CASE("a detached helper of the running process is left alone") {
  SupervisorFixture f;
  // The helper's parent (a subshell) exits at once, so the helper is re-parented to us while
  // the service itself keeps running: it is the live process's, not an orphan of an old one.
  ServiceConfig s =
      f.Svc("keeper", {"/bin/sh", "-c", "(setsid sleep 63 & echo $! > helper.pid); exec sleep 60"});
  f.Apply({s});
  REQUIRE(f.RunUntil([&] { return fs::exists(f.dir / "helper.pid"); }, 5000));
  f.RunUntil([] { return false; }, 300);
  pid_t helper = 0;
  std::ifstream(f.dir / "helper.pid") >> helper;
  REQUIRE(helper > 0);
  // Another service's exit makes the supervisor look at its orphans meanwhile.
  ServiceConfig other = f.Svc("other", {"/bin/sh", "-c", "exit 1"});
  other.backoff_base_ms = 60'000;
  f.Apply({s, other});
  REQUIRE(f.RunUntil([&] { return f.Count("exited") >= 1; }, 5000));
  f.RunUntil([] { return false; }, 1000);
  CHECK(Alive(helper));
  ::kill(helper, SIGKILL);
}

TEST_CASE("ready comes from the status file, and only when it names this process") {
  SupervisorFixture f;
  ServiceConfig s = f.Svc(
      "reporter",
      {"/bin/sh", "-c",
       "echo '{\"pid\": 1, \"state\": \"ready\"}' > st.tmp && mv st.tmp status.json; sleep 0.4; "
       "echo \"{\\\"pid\\\": $$, \\\"state\\\": \\\"ready\\\"}\" > st.tmp && mv st.tmp "
       "status.json; exec sleep 60"});
  s.status_file = (f.dir / "status.json").string();
  f.Apply({s});
  Service* svc = f.sup->Find("reporter");
  // Another pid's "ready" does not count.
  f.RunUntil([] { return false; }, 250);
  CHECK(svc->state() == ServiceState::kStarting);
  REQUIRE(f.RunUntil([&] { return svc->state() == ServiceState::kReady; }, 5000));
  CHECK(svc->Snapshot().ready_at >= svc->Snapshot().started_at + 300);
  bool woke = false;
  svc->WaitReady(100, [&](bool ready) { woke = ready; });
  CHECK(woke);  // already ready: answered at once
}

TEST_CASE("the backoff resets after a verified healthy period, not before") {
  SupervisorFixture f;
  ServiceConfig quick = f.Svc("quick", {"/bin/sh", "-c", "sleep 0.2; exit 1"});
  quick.healthy_after_ms = 5000;  // never lives that long: failures pile up
  ServiceConfig steady = f.Svc("steady", {"/bin/sh", "-c", "sleep 0.6; exit 1"});
  steady.healthy_after_ms = 200;  // lives longer than that each time
  f.Apply({quick, steady});
  REQUIRE(f.RunUntil([&] { return f.sup->Find("quick")->Snapshot().failures >= 3; }, 10'000));
  REQUIRE(f.RunUntil(
      [&] {
        int n = 0;
        for (const auto& [name, e] : f.events) n += name == "steady" && e.kind == "exited";
        return n >= 3;
      },
      10'000));
  int resets = 0;
  for (const auto& [name, e] : f.events) {
    if (e.kind == "backoff_reset") {
      CHECK(name == "steady");
      ++resets;
    }
  }
  CHECK(resets >= 2);
  // Each of steady's failures came after a reset: it always restarts after the base delay.
  for (const auto& [name, e] : f.events) {
    if (name == "steady" && e.kind == "exited")
      CHECK(e.detail.find("restart 1 in 50 ms") != std::string::npos);
  }
}

TEST_CASE("a restart asked for ends the healthy period: the next process earns its own") {
  SupervisorFixture f;
  // Starts 1 and 2 fail at once; 3 is ready at once; 4 takes 0.7 s to be ready.
  ServiceConfig s = f.Svc(
      "flaky", {"/bin/sh", "-c",
                "n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; "
                "[ $n -le 2 ] && exit 1; [ $n -ge 4 ] && sleep 0.7; "
                "echo \"{\\\"pid\\\": $$, \\\"state\\\": \\\"ready\\\"}\" > st.tmp && mv st.tmp "
                "status.json; exec sleep 60"});
  s.status_file = (f.dir / "status.json").string();
  s.healthy_after_ms = 500;
  f.Apply({s});
  Service* svc = f.sup->Find("flaky");
  REQUIRE(f.RunUntil([&] { return svc->state() == ServiceState::kReady; }, 10'000));
  CHECK(svc->Snapshot().failures == 2);
  svc->Restart("test", nullptr);
  REQUIRE(f.RunUntil([&] { return f.Count("ready") >= 2; }, 10'000));
  // Ready 0.7 s after the restart, which is past 500 ms from the first process's ready: the
  // new process has been ready for no time at all, so nothing is forgiven yet.
  CHECK(svc->Snapshot().failures == 2);
  CHECK(f.Count("backoff_reset") == 0);
  // Forgiven once it has been ready for the whole period itself.
  REQUIRE(f.RunUntil([&] { return f.Count("backoff_reset") == 1; }, 5000));
  CHECK(svc->Snapshot().failures == 0);
}

TEST_CASE("a restarted supervisor adopts the recorded process and refuses a stale record") {
  SupervisorFixture f;
  ServiceConfig keep = f.Svc("keeper", {"/bin/sleep", "60"});
  keep.stop_on_exit = false;
  ProcessIdentity first = f.LeaveRunning(keep);

  f.events.clear();
  f.sup = f.NewSupervisor();
  f.Apply({keep});
  CHECK(f.Count("adopted") == 1);
  CHECK(f.Count("started") == 0);
  ServiceSnapshot s = f.sup->Find("keeper")->Snapshot();
  CHECK(s.adopted);
  CHECK(s.process.SameAs(first));

  // Stopping the adopted process goes through its pidfd.
  bool stopped = false;
  f.sup->Find("keeper")->Stop("test", [&] { stopped = true; });
  REQUIRE(f.RunUntil([&] { return stopped; }, 5000));
  CHECK(f.RunUntil([&] { return !Alive(first.pid); }, 5000));
  f.Close();

  // A record whose pid now names another process (here: this test) is not trusted.
  std::ofstream(f.dir / "services" / "keeper.json")
      << "{\"pid\": " << getpid() << ", \"start_ticks\": 1, \"exe\": \"/bin/sleep\"}";
  f.events.clear();
  f.sup = f.NewSupervisor();
  keep.stop_on_exit = true;
  f.Apply({keep});
  CHECK(f.Count("stale_record") == 1);
  // A spawn prepares its output file on the pool first: wait for it.
  CHECK(f.RunUntil([&] { return f.Count("started") == 1; }, 5000));
  CHECK(f.Count("adopted") == 0);
  CHECK(f.sup->Find("keeper")->Snapshot().process.pid != getpid());
}

TEST_CASE("a record from an earlier boot is not trusted, even if pid and start time match") {
  SupervisorFixture f;
  ServiceConfig keep = f.Svc("keeper", {"/bin/sleep", "60"});
  keep.stop_on_exit = false;
  ProcessIdentity first = f.LeaveRunning(keep);
  auto record = f.dir / "services" / "keeper.json";
  std::string text;
  std::getline(std::ifstream(record), text);
  CHECK(text.find("\"boot_id\":\"" + BootId() + "\"") != std::string::npos);
  // The same pid and start ticks, recorded in another boot: after a reboot they name a
  // stranger that happens to match, never the process the record was made for.
  std::ofstream(record) << "{\"pid\": " << first.pid << ", \"start_ticks\": " << first.start_ticks
                        << ", \"exe\": \"/bin/sleep\", "
                        << "\"boot_id\": \"00000000-0000-0000-0000-000000000000\"}";
  f.events.clear();
  f.sup = f.NewSupervisor();
  keep.stop_on_exit = true;
  f.Apply({keep});
  CHECK(f.Count("stale_record") == 1);
  CHECK(f.Count("adopted") == 0);
  CHECK(f.RunUntil([&] { return f.Count("started") == 1; }, 5000));
  CHECK(f.sup->Find("keeper")->Snapshot().process.pid != first.pid);
  ::kill(first.pid, SIGKILL);
}

// Starts argv in a session of its own with exactly `env`, as a Service would.
pid_t SpawnWithEnv(std::vector<std::string> argv, std::vector<std::string> env) {
  std::vector<char*> a, e;
  for (auto& s : argv) a.push_back(s.data());
  for (auto& s : env) e.push_back(s.data());
  a.push_back(nullptr);
  e.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, a[0], nullptr, &attr, a.data(), e.data());
  posix_spawnattr_destroy(&attr);
  REQUIRE(rc == 0);
  return pid;
}

TEST_CASE("a process started but never recorded is found by its environment, not its helpers") {
  // No supervisor here: its orphan scan would stop these processes of a service it lacks.
  char tmpl[] = "/tmp/guardian-unrecorded-XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  std::string state = dir.string();
  // The service's process, which starts a helper in a session of its own and one in its group.
  pid_t leader = SpawnWithEnv(
      {"/bin/sh", "-c",
       "cd \"$GUARDIAN_STATE_DIR\"; sleep 64 & setsid sleep 64 & "
       "echo $! > helper.pid; exec sleep 64"},
      {"GUARDIAN_SERVICE=web", "GUARDIAN_STATE_DIR=" + state + "/", "PATH=/usr/bin:/bin"});
  // The same service of another guardiand (another state dir), and another service of ours.
  pid_t elsewhere = SpawnWithEnv({"/bin/sleep", "64"},
                                 {"GUARDIAN_SERVICE=web", "GUARDIAN_STATE_DIR=/var/lib/other"});
  pid_t db =
      SpawnWithEnv({"/bin/sleep", "64"}, {"GUARDIAN_SERVICE=db", "GUARDIAN_STATE_DIR=" + state});
  pid_t helper = 0;
  for (int i = 0; i < 500 && helper == 0; ++i) {
    ::usleep(10'000);
    std::ifstream(dir / "helper.pid") >> helper;
  }
  REQUIRE(helper > 0);
  ::usleep(200'000);  // the helper has left the group and every program has been exec'd

  // pid -1 as `self`: these are this test's children, which a guardiand would skip.
  auto found = FindUnrecordedServices(state, {"web", "cache"}, -1);
  REQUIRE(found.size() == 1);
  const RecordedProcess& web = found.at("web");
  CHECK(web.process.pid == leader);
  CHECK(web.found_by_environment);
  CHECK(web.boot_id == BootId());
  ProcessIdentity now;
  REQUIRE(ReadProcessIdentity(leader, &now).ok());
  CHECK(web.process.SameAs(now));
  CHECK(std::abs(web.started_at - SystemClock::Get()->WallMs()) < 5000);
  CHECK(RecordIsLive(web));
  CHECK(FindUnrecordedServices(state, {"db"}, -1).at("db").process.pid == db);
  // What this guardiand runs itself is never taken for a predecessor's.
  CHECK(FindUnrecordedServices(state, {"web", "db"}, getpid()).empty());

  for (pid_t pid : {leader, elsewhere, db, helper}) ::kill(-pid, SIGKILL);  // each group
  for (pid_t pid : {leader, elsewhere, db}) ::waitpid(pid, nullptr, 0);
  CHECK_FALSE(RecordIsLive(web));
  fs::remove_all(dir);
}

TEST_CASE("a port move is kept in the registry within the service's range") {
  SupervisorFixture f;
  ServiceConfig s = f.Svc("web", {"/bin/sleep", "60"});
  s.port_preferred = 18080;
  s.port_lo = 18080;
  s.port_hi = 18082;
  f.Apply({s});
  CHECK(f.sup->ports().at("web").port == 18080);
  Status result = Status::Aborted("not called");
  f.sup->SetPort("web", 18090, "test", [&](Status st) { result = st; });
  CHECK(result.code() == Status::Code::kInvalidArgument);
  bool done = false;
  f.sup->SetPort("web", 18082, "18080 held by another program", [&](Status st) {
    result = st;
    done = true;
  });
  REQUIRE(f.RunUntil([&] { return done; }, 5000));
  CHECK(result.ok());
  PortTable saved;
  REQUIRE(LoadPortRegistry((f.dir / "ports.json").string(), &saved).ok());
  CHECK(saved.at("web").port == 18082);
  CHECK(saved.at("web").reason == "18080 held by another program");
  CHECK(f.sup->Find("web")->port() == 18082);
}

}  // namespace guardian
