// ChildProcess with real programs: output and exit status, and a timeout that ends the program
// together with what it started (its process group), so nothing it left is still running.

#include "daemon/child_process.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "tests/unit/temp_dir.h"
#include "tests/unit/test_loop.h"

namespace guardian {
namespace {

// Running or stopped, not a zombie waiting for a parent that does not reap (PID 1 in a
// container may not) and not gone.
bool Running(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return false;
  auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

pid_t ReadPid(const std::filesystem::path& path) {
  std::ifstream f(path);
  pid_t pid = 0;
  f >> pid;
  return pid;
}

ChildResult RunToEnd(TestLoop& t, ChildOptions opts) {
  std::optional<ChildResult> got;
  ChildProcess::Run(&t.loop, std::move(opts), [&](ChildResult r) { got = std::move(r); });
  t.RunUntil([&] { return got.has_value(); });
  return std::move(*got);
}

TEST_CASE("a program's output and exit status come back") {
  TestLoop t;
  ChildOptions o;
  o.argv = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3"};
  ChildResult r = RunToEnd(t, o);
  CHECK(r.status.ok());
  CHECK(r.exit_code == 3);
  CHECK(r.out == "out\n");
  CHECK(r.err == "err\n");
  CHECK_FALSE(r.timed_out);
}

TEST_CASE("a timeout ends the program and the processes it started") {
  TestLoop t;
  TempDir dir;
  auto pidfile = dir.path / "child.pid";
  ChildOptions o;
  // The shell waits on a child of its own: a hung helper (a find on a dead mount, say).
  o.argv = {"/bin/sh", "-c", "sleep 100 & echo $! > " + pidfile.string() + "; wait"};
  o.timeout_ms = 200;
  o.kill_grace_ms = 300;
  ChildResult r = RunToEnd(t, o);
  CHECK(r.timed_out);
  CHECK_FALSE(r.status.ok());
  pid_t helper = ReadPid(pidfile);
  REQUIRE(helper > 0);
  // Signalled with its group; give the kernel a moment to deliver it.
  for (int i = 0; i < 50 && Running(helper); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK_FALSE(Running(helper));
}

TEST_CASE("a program that ends by itself leaves what it started running") {
  // A start script that launches a daemon and exits: its daemon is not ours to end.
  TestLoop t;
  TempDir dir;
  auto pidfile = dir.path / "daemon.pid";
  ChildOptions o;
  o.argv = {"/bin/sh", "-c",
            "sleep 100 >/dev/null 2>&1 & echo $! > " + pidfile.string() + "; exit 0"};
  o.timeout_ms = 5000;
  ChildResult r = RunToEnd(t, o);
  CHECK(r.status.ok());
  pid_t daemon = ReadPid(pidfile);
  REQUIRE(daemon > 0);
  CHECK(Running(daemon));
  ::kill(daemon, SIGKILL);
}

}  // namespace
}  // namespace guardian
