// PidWatch against real processes: the exit of a process it did not start (here a forked
// child, as a pidfile's daemon would be) wakes it; OpenPidfd identifies the process it pins and
// refuses a pid that is gone; destroying a watch closes its handle without calling back.
#include "daemon/pid_watch.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include "tests/unit/test_loop.h"

using guardian::OpenPidfd;
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
  int fd = -1;
  REQUIRE(OpenPidfd(c.pid, &id, &fd).ok());
  bool exited = false;
  {
    PidWatch w(&t.loop);
    REQUIRE(w.Start(fd, [&] { exited = true; }).ok());
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

TEST_CASE("OpenPidfd identifies the process it pins, and refuses one that is gone") {
  Child c;
  ProcessIdentity read, pinned;
  REQUIRE(ReadProcessIdentity(c.pid, &read).ok());
  int fd = -1;
  REQUIRE(OpenPidfd(c.pid, &pinned, &fd).ok());
  CHECK(fd >= 0);
  CHECK(pinned.SameAs(read));
  ::close(fd);
  // Killed but not reaped: only a zombie is left, which is not running.
  ::kill(c.pid, SIGKILL);
  for (int i = 0; i < 200 && ReadProcessIdentity(c.pid, &read).ok(); ++i) ::usleep(5000);
  CHECK(OpenPidfd(c.pid, &pinned, &fd).code() == guardian::Status::Code::kNotFound);
  CHECK(fd == -1);
  ::waitpid(c.pid, nullptr, 0);
  c.pid = -1;
  CHECK(OpenPidfd(0x3fffff, &pinned, &fd).code() == guardian::Status::Code::kNotFound);
  TestLoop t;
  PidWatch w(&t.loop);
  CHECK(w.Start(-1, [] {}).code() == guardian::Status::Code::kInvalidArgument);
  CHECK_FALSE(w.watching());
}

TEST_CASE("destroying a watch closes its handle without calling back") {
  TestLoop t;
  Child c;
  ProcessIdentity id;
  int fd = -1;
  REQUIRE(OpenPidfd(c.pid, &id, &fd).ok());
  bool called = false;
  {
    PidWatch w(&t.loop);
    REQUIRE(w.Start(fd, [&] { called = true; }).ok());
  }
  ::kill(c.pid, SIGKILL);
  ::waitpid(c.pid, nullptr, 0);
  c.pid = -1;
  uv_run(&t.loop, UV_RUN_DEFAULT);  // returns once the closed handle is freed
  CHECK_FALSE(called);
}
