// DnsResolver against a real DNS server on loopback (dnsmasq from Debian, on a free port, with
// one name), a port where nothing answers, and a socket that swallows queries.
#include "daemon/dns_resolver.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/unit/test_loop.h"

namespace guardian {
namespace {

// A free loopback UDP port, with the socket bound to it (the caller decides whether to keep it).
int BindUdp(int* port) {
  int s = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return s;
}

struct Dnsmasq {
  pid_t pid = -1;
  int port = 0;
  bool Start() {
    if (::access("/usr/sbin/dnsmasq", X_OK) != 0) return false;
    ::close(BindUdp(&port));
    std::string p = "--port=" + std::to_string(port);
    pid = ::fork();
    if (pid == 0) {
      int null = ::open("/dev/null", O_WRONLY);  // its start-up chatter goes to stderr
      ::dup2(null, STDERR_FILENO);
      execl("/usr/sbin/dnsmasq", "dnsmasq", "--no-daemon", "--conf-file=/dev/null", p.c_str(),
            "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
            "--local=/test/", "--address=/up.test/10.1.2.3", "--user=root",
            "--pid-file=", "--log-facility=/dev/null", static_cast<char*>(nullptr));
      _exit(127);
    }
    // Ready once it answers: a plain query until it does (at most 2 s).
    for (int i = 0; i < 200; ++i) {
      int s = ::socket(AF_INET, SOCK_DGRAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<uint16_t>(port));
      // A minimal query for "up.test" A.
      const unsigned char q[] = {0x12, 0x34, 1, 0,   0,   1,   0,   0, 0, 0, 0, 0, 2,
                                 'u',  'p',  4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};
      ::sendto(s, q, sizeof q, 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
      timeval tv{0, 10'000};
      ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      unsigned char buf[512];
      bool answered = ::recv(s, buf, sizeof buf, 0) > 0;
      ::close(s);
      if (answered) return true;
    }
    return false;
  }
  ~Dnsmasq() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

bool StartOrSkip(Dnsmasq& dns) {
  if (dns.Start()) return true;
  MESSAGE("skipped: dnsmasq (Debian package dnsmasq-base) is not installed or did not start");
  return false;
}

DnsOptions AtPort(int port) {
  DnsOptions o;
  o.servers = {"127.0.0.1:" + std::to_string(port)};
  return o;
}

using Loop = TestLoop;

DnsAnswer Lookup(Loop& l, DnsResolver& r, const std::string& name) {
  DnsAnswer out;
  bool got = false;
  r.Resolve(name, [&](DnsAnswer a) {
    out = std::move(a);
    got = true;
  });
  l.RunUntil([&] { return got; });
  return out;
}

}  // namespace

TEST_CASE("a name the server knows resolves; one it does not is nxdomain") {
  Dnsmasq dns;
  if (!StartOrSkip(dns)) return;
  Loop l;
  DnsResolver r(&l.loop);
  DnsOptions o = AtPort(dns.port);
  REQUIRE(r.Init(o).ok());
  DnsAnswer a = Lookup(l, r, "up.test");
  CHECK(a.ok());
  REQUIRE(a.addresses.size() == 1);
  CHECK(a.addresses[0] == "10.1.2.3");
  a = Lookup(l, r, "nope.test");
  CHECK(a.error_kind == "nxdomain");
  CHECK(a.addresses.empty());
  l.Close(r);
}

TEST_CASE("a server that swallows queries times out; one that is not there fails too") {
  Loop l;
  int port = 0;
  int silent = BindUdp(&port);  // bound, never read
  DnsResolver r(&l.loop);
  DnsOptions o = AtPort(port);
  o.timeout_ms = 100;
  o.tries = 2;
  REQUIRE(r.Init(o).ok());
  DnsAnswer a = Lookup(l, r, "up.test");
  CHECK(a.error_kind == "timeout");
  CHECK(a.elapsed_ms >= 150);
  ::close(silent);  // now nothing listens there: ICMP port unreachable
  a = Lookup(l, r, "up.test");
  CHECK((a.error_kind == "refused" || a.error_kind == "timeout"));
  l.Close(r);
}

// A loop that stalls past c-ares' deadline (a slow spawn under load) still reads the answer that
// came in meanwhile before c-ares judges the deadline.
TEST_CASE("an answer that came while the loop stalled past the deadline is no timeout") {
  Dnsmasq dns;
  if (!StartOrSkip(dns)) return;
  Loop l;
  DnsResolver r(&l.loop);
  DnsOptions o = AtPort(dns.port);
  o.timeout_ms = 50;
  o.tries = 1;
  REQUIRE(r.Init(o).ok());
  DnsAnswer out;
  bool got = false;
  r.Resolve("up.test", [&](DnsAnswer a) {
    out = std::move(a);
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the loop is blocked
  l.RunUntil([&] { return got; });
  CHECK(out.ok());
  CHECK(out.error_kind.empty());
  l.Close(r);
}

TEST_CASE("closing with a lookup in flight calls nothing back and closes every handle") {
  Loop l;
  int port = 0;
  int silent = BindUdp(&port);
  DnsResolver r(&l.loop);
  DnsOptions o = AtPort(port);
  o.timeout_ms = 2000;
  REQUIRE(r.Init(o).ok());
  bool called = false;
  r.Resolve("up.test", [&](DnsAnswer) { called = true; });
  uv_run(&l.loop, UV_RUN_NOWAIT);
  l.Close(r);
  CHECK_FALSE(called);
  bool refused = false;
  r.Resolve("up.test", [&](DnsAnswer a) { refused = a.error_kind == "error"; });
  CHECK(refused);
  ::close(silent);
}

}  // namespace guardian
