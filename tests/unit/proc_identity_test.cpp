// ProcessIdentity against real processes: a forked child that sleeps, killed or spared
// according to its start time.
#include "daemon/proc_identity.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

using guardian::ParseProcStat;
using guardian::ProcessIdentity;
using guardian::ReadProcessIdentity;
using guardian::SignalIfSame;
using guardian::Status;

namespace {

// A child running /bin/sleep; killed and reaped at the end of the test if still there.
struct SleepingChild {
  pid_t pid = -1;
  SleepingChild() {
    pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    REQUIRE(pid > 0);
    // Wait for the exec, so the identity names sleep and not this test binary.
    for (int i = 0; i < 400; ++i) {
      ProcessIdentity id;
      if (ReadProcessIdentity(pid, &id).ok() && id.exe.find("sleep") != std::string::npos) break;
      ::usleep(5000);
    }
  }
  ~SleepingChild() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  int Reap() {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    pid = -1;
    return status;
  }
};

}  // namespace

TEST_CASE("ParseProcStat reads state and start time past a command name with ') ('") {
  std::string fields = " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 20 21";
  char state = 0;
  uint64_t ticks = 0;
  REQUIRE(ParseProcStat("77 (evil) (name) x)" + fields, &state, &ticks).ok());
  CHECK(state == 'S');
  CHECK(ticks == 424242);
  CHECK(ParseProcStat("77 (short) S 1 2", &state, &ticks).code() == Status::Code::kCorruption);
  CHECK(ParseProcStat("no parens at all", &state, &ticks).code() == Status::Code::kCorruption);
  std::string bad = " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 12x 20";
  CHECK(ParseProcStat("77 (a)" + bad, &state, &ticks).code() == Status::Code::kCorruption);
}

TEST_CASE("ReadProcessIdentity names this process, and nothing for a pid that is not there") {
  ProcessIdentity self;
  REQUIRE(ReadProcessIdentity(::getpid(), &self).ok());
  CHECK(self.pid == ::getpid());
  CHECK(self.start_ticks > 0);
  CHECK(self.exe.find("proc_identity_test") != std::string::npos);
  ProcessIdentity again;
  REQUIRE(ReadProcessIdentity(::getpid(), &again).ok());
  CHECK(again.SameAs(self));

  ProcessIdentity none;
  CHECK(ReadProcessIdentity(0, &none).code() == Status::Code::kInvalidArgument);
  // Above the kernel's pid_max: never a live process.
  CHECK(ReadProcessIdentity(1 << 30, &none).code() == Status::Code::kNotFound);
}

TEST_CASE("SignalIfSame spares a process whose start time differs, and signals the right one") {
  SleepingChild child;
  ProcessIdentity id;
  REQUIRE(ReadProcessIdentity(child.pid, &id).ok());
  CHECK(id.exe.find("sleep") != std::string::npos);

  // What a stale pidfile would remember: the same pid, another process's start time.
  ProcessIdentity stale = id;
  stale.start_ticks = id.start_ticks - 1;
  Status s = SignalIfSame(stale, SIGKILL);
  CHECK(s.code() == Status::Code::kBusy);
  CHECK(s.message().find("not signalled") != std::string::npos);
  ProcessIdentity still;
  REQUIRE(ReadProcessIdentity(child.pid, &still).ok());  // alive
  CHECK(still.SameAs(id));

  // Same pid and start time, recorded before an exec changed the program (a #! script's env,
  // a wrapper): the same process, and the one signalled.
  ProcessIdentity before_exec = id;
  before_exec.exe = "/usr/bin/env";
  CHECK(before_exec.SameAs(id));
  REQUIRE(SignalIfSame(before_exec, SIGTERM).ok());
  int status = child.Reap();
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGTERM);
  CHECK(SignalIfSame(id, SIGTERM).code() == Status::Code::kNotFound);
}

TEST_CASE("A zombie is not a live process") {
  SleepingChild child;
  ProcessIdentity id;
  REQUIRE(ReadProcessIdentity(child.pid, &id).ok());
  ::kill(child.pid, SIGKILL);
  // Not reaped yet: /proc still lists it, as a zombie.
  Status s;
  for (int i = 0; i < 400; ++i) {
    ProcessIdentity z;
    s = ReadProcessIdentity(child.pid, &z);
    if (!s.ok()) break;
    ::usleep(5000);
  }
  CHECK(s.code() == Status::Code::kNotFound);
  CHECK(s.message().find("exited") != std::string::npos);
  CHECK(SignalIfSame(id, SIGTERM).code() == Status::Code::kNotFound);
  child.Reap();
}
