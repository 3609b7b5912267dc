// ListenTable against real sockets: a dump finds a listener with its backlog, sees its accept
// queue fill, loses it when it closes, and tells a v6only wildcard apart; in each case a real
// connect agrees with the verdict. Queries close together share one dump.
#include "daemon/listen_table.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tests/unit/test_loop.h"

using guardian::DumpListeners;
using guardian::JudgeListen;
using guardian::Listener;
using guardian::ListenTable;
using guardian::ParseListenerDump;
using guardian::TestLoop;

namespace {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) { REQUIRE(fd >= 0); }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// A TCP listener on 127.0.0.1 (or [::] with v6only), port chosen by the kernel.
int Listen(int backlog, bool v6_wildcard_only = false, int* port = nullptr) {
  int fd = ::socket(v6_wildcard_only ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  int on = 1;
  if (v6_wildcard_only) {
    REQUIRE(::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) == 0);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  }
  REQUIRE(::listen(fd, backlog) == 0);
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
  if (port) {
    *port = ntohs(v6_wildcard_only ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                   : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }
  return fd;
}

// A non-blocking connect to 127.0.0.1:port: true when it completes within `wait_ms`.
bool Connects(int port, int wait_ms, Fd* keep = nullptr) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    ok = true;
  } else if (errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, wait_ms) == 1) {
      int err = 0;
      socklen_t l = sizeof(err);
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
      ok = err == 0;
    }
  }
  if (keep) {
    keep->fd = fd;
  } else {
    ::close(fd);
  }
  return ok;
}

std::vector<Listener> Dump() {
  std::vector<Listener> t;
  REQUIRE(DumpListeners(&t).ok());
  return t;
}

}  // namespace

TEST_CASE("a dump finds a listener with its backlog and says it accepts, as a connect does") {
  int port = 0;
  Fd l(Listen(7, false, &port));
  auto table = Dump();
  const Listener* found = nullptr;
  for (const auto& x : table) {
    if (x.port == port && !x.v6) found = &x;
  }
  REQUIRE(found);
  CHECK(found->address == "127.0.0.1");
  CHECK(found->backlog == 7);
  CHECK(found->queued == 0);
  auto v = JudgeListen(table, "127.0.0.1", port);
  CHECK(v.ok);
  CHECK(v.what == "listening (0 of 7 queued)");
  CHECK(Connects(port, 1000));
}

TEST_CASE("a full accept queue fails, and a connect then times out too") {
  int port = 0;
  Fd l(Listen(1, false, &port));
  // Nobody accepts: two handshakes fill a queue of limit 1 (the kernel allows limit + 1).
  Fd c1, c2;
  REQUIRE(Connects(port, 1000, &c1));
  REQUIRE(Connects(port, 1000, &c2));
  auto v = JudgeListen(Dump(), "127.0.0.1", port);
  CHECK_FALSE(v.ok);
  CHECK(v.what.find("accept queue full (2 waiting, limit 1)") == 0);
  CHECK_FALSE(Connects(port, 300));  // the SYN is dropped: no answer, as the verdict said
}

TEST_CASE("a closed listener is gone from the next dump, and a connect is refused") {
  int port = 0;
  {
    Fd l(Listen(4, false, &port));
    CHECK(JudgeListen(Dump(), "127.0.0.1", port).ok);
  }
  auto v = JudgeListen(Dump(), "127.0.0.1", port);
  CHECK_FALSE(v.ok);
  CHECK(v.what == "nothing listens on this host at that address and port");
  CHECK_FALSE(Connects(port, 1000));
}

TEST_CASE("a v6only wildcard listener does not take IPv4, and the dump says v6only") {
  int port = 0;
  Fd l(Listen(4, true, &port));
  auto table = Dump();
  bool seen = false;
  for (const auto& x : table) {
    if (x.port == port) {
      seen = true;
      CHECK(x.v6);
      CHECK(x.address == "::");
      CHECK(x.v6only);
    }
  }
  CHECK(seen);
  CHECK(JudgeListen(table, "::1", port).ok);
  CHECK_FALSE(JudgeListen(table, "127.0.0.1", port).ok);
  CHECK_FALSE(Connects(port, 1000));
}

TEST_CASE("address rules: wildcards, dual-stack IPv6, another address, bad host") {
  std::vector<Listener> t = {
      {false, "0.0.0.0", 80, 0, 128, false},  {true, "::", 81, 0, 128, false},
      {false, "10.1.2.3", 82, 0, 128, false}, {false, "127.0.0.1", 83, 5, 4, false},  // full
      {false, "127.0.0.1", 83, 0, 4, false},  // a reuseport sibling with room
  };
  CHECK(JudgeListen(t, "127.0.0.1", 80).ok);
  CHECK_FALSE(JudgeListen(t, "::1", 80).ok);  // an IPv4 wildcard takes no IPv6
  CHECK(JudgeListen(t, "127.0.0.1", 81).ok);  // dual-stack
  CHECK(JudgeListen(t, "0:0::1", 81).ok);     // spelled otherwise, same address
  CHECK_FALSE(JudgeListen(t, "127.0.0.1", 82).ok);
  CHECK(JudgeListen(t, "127.0.0.1", 83).ok);
  auto bad = JudgeListen(t, "localhost", 80);
  CHECK_FALSE(bad.ok);
  CHECK(bad.what == "not a numeric address: 'localhost'");
}

TEST_CASE("the parser reports a kernel error and refuses a truncated message") {
  struct {
    nlmsghdr h;
    nlmsgerr e;
  } err{};
  err.h.nlmsg_len = sizeof(err);
  err.h.nlmsg_type = NLMSG_ERROR;
  err.e.error = -EACCES;
  std::vector<Listener> out;
  bool done = false;
  auto s = ParseListenerDump(&err, sizeof(err), &out, &done);
  CHECK_FALSE(s.ok());
  CHECK(s.message() == std::string("sock_diag: ") + std::strerror(EACCES));

  nlmsghdr h{};
  h.nlmsg_len = NLMSG_LENGTH(4);  // a socket message far shorter than inet_diag_msg
  h.nlmsg_type = 20;              // SOCK_DIAG_BY_FAMILY
  char buf[NLMSG_LENGTH(4)] = {};
  std::memcpy(buf, &h, sizeof(h));
  s = ParseListenerDump(buf, sizeof(buf), &out, &done);
  CHECK_FALSE(s.ok());
  CHECK(s.message() == "sock_diag: truncated socket message");
  CHECK_FALSE(done);
}

TEST_CASE("queries close together share one dump; a stale one starts another") {
  TestLoop t;
  int port = 0;
  Fd l(Listen(4, false, &port));
  int answered = 0;
  {
    ListenTable table(&t.loop);
    auto count = [&](const guardian::Status& s, const std::vector<Listener>& ls) {
      CHECK(s.ok());
      CHECK(JudgeListen(ls, "127.0.0.1", port).ok);
      ++answered;
    };
    table.Query(100, count);
    table.Query(100, count);
    CHECK(answered == 0);  // the dump runs on the pool
    t.RunUntil([&] { return answered == 2; });
    CHECK(table.dumps() == 1);
    table.Query(60'000, count);  // fresh enough: answered at once from the last dump
    CHECK(answered == 3);
    CHECK(table.dumps() == 1);
    ::usleep(5000);
    uv_update_time(&t.loop);
    table.Query(1, count);
    t.RunUntil([&] { return answered == 4; });
    CHECK(table.dumps() == 2);
    // Destroyed with a query pending: it is dropped, never called.
    ::usleep(5000);
    uv_update_time(&t.loop);
    table.Query(1, [&](const guardian::Status&, const std::vector<Listener>&) { answered = -1; });
  }
  uv_run(&t.loop, UV_RUN_DEFAULT);  // lets the pool's dump finish
  CHECK(answered == 4);
}
