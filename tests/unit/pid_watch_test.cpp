// PidWatch against real processes: the exit of a process it did not start (here a forked
// child, as a pidfile's daemon would be) wakes it; a pid whose start time does not match is
// refused; destroying it while it watches closes its handle without calling back.
#include "daemon/pid_watch.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include "tests/unit/test_loop.h"

using guardian::PidWatch;
using guardian::ProcessIdentity;
using guardian::ReadProcessIdentity;
using guardian::TestLoop;

namespace {

struct Child {
  pid_t pid = -1;
  Child() {
    pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    REQUIRE(pid > 0);
  }
  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

}  // namespace

TEST_CASE("an exit wakes the watch, and ExitedNow sees it before the loop does") {
  TestLoop t;
  Child c;
  ProcessIdentity id;
  REQUIRE(ReadProcessIdentity(c.pid, &id).ok());
  bool exited = false;
  {
    PidWatch w(&t.loop);
    REQUIRE(w.Start(id, [&] { exited = true; }).ok());
    CHECK_FALSE(w.ExitedNow());
    ::kill(c.pid, SIGKILL);
    // Not reaped yet: a zombie has exited all the same.
    for (int i = 0; i < 200 && !w.ExitedNow(); ++i) ::usleep(5000);
    CHECK(w.ExitedNow());
    CHECK_FALSE(exited);
    t.RunUntil([&] { return exited; });
  }
  uv_run(&t.loop, UV_RUN_DEFAULT);  // frees the closed handle
  CHECK(exited);
}

TEST_CASE("a pid that now names another process is refused") {
  TestLoop t;
  Child c;
  ProcessIdentity id;
  REQUIRE(ReadProcessIdentity(c.pid, &id).ok());
  id.start_ticks += 1;  // the pidfile's process started at another time: not this one
  PidWatch w(&t.loop);
  bool called = false;
  CHECK(w.Start(id, [&] { called = true; }).code() == guardian::Status::Code::kNotFound);
  CHECK_FALSE(w.watching());
  ProcessIdentity gone;
  gone.pid = 0x3fffff;  // no such pid
  CHECK(w.Start(gone, [&] { called = true; }).code() == guardian::Status::Code::kNotFound);
  uv_run(&t.loop, UV_RUN_NOWAIT);
  CHECK_FALSE(called);
}

TEST_CASE("destroying a watch closes its handle without calling back") {
  TestLoop t;
  Child c;
  ProcessIdentity id;
  REQUIRE(ReadProcessIdentity(c.pid, &id).ok());
  bool called = false;
  {
    PidWatch w(&t.loop);
    REQUIRE(w.Start(id, [&] { called = true; }).ok());
  }
  ::kill(c.pid, SIGKILL);
  ::waitpid(c.pid, nullptr, 0);
  c.pid = -1;
  uv_run(&t.loop, UV_RUN_DEFAULT);  // returns once the closed handle is freed
  CHECK_FALSE(called);
}
