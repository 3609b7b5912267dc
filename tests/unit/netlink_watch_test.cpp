// NetlinkWatch wakes on a real link change: a veth pair added and removed in this network
// namespace (root only; skipped otherwise).
#include "daemon/netlink_watch.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tests/unit/test_loop.h"

namespace guardian {
namespace {

// Runs `ip ARGS...` (argv, no shell) and returns its exit code.
int Ip(std::vector<std::string> args) {
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> argv{const_cast<char*>("ip")};
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp("ip", argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("a link added and removed wakes the watch") {
  if (geteuid() != 0) {
    MESSAGE("skipped: needs root to add a link");
    return;
  }
  TestLoop t;
  int changes = 0;
  {
    NetlinkWatch watch(&t.loop);
    REQUIRE(watch.Start([&] { ++changes; }).ok());
    std::string name = "gnlw" + std::to_string(getpid() % 100000);
    REQUIRE(Ip({"link", "add", name, "type", "veth", "peer", "name", name + "p"}) == 0);
    t.RunUntil([&] { return changes > 0; });
    int after_add = changes;
    REQUIRE(Ip({"link", "del", name}) == 0);
    t.RunUntil([&] { return changes > after_add; });
    CHECK(watch.Start([] {}).code() == Status::Code::kInvalidArgument);  // once only
  }
  uv_run(&t.loop, UV_RUN_DEFAULT);  // the closed handle's callback
}

}  // namespace guardian
