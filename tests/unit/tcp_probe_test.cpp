// TcpProbe against real sockets on loopback: a listener, a closed port (RST), a deadline that
// passes (a listener whose accept queue is full), and cancellation. "unreachable" needs a
// network without a route: the network_unreachable tests make one in a namespace.
#include "daemon/tcp_probe.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "tests/unit/test_loop.h"

namespace guardian {
namespace {

int Listener(int* port, int backlog = 16) {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::listen(s, backlog);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return s;
}

TcpProbeResult Probe(TestLoop& l, const std::string& addr, int port, int64_t timeout_ms) {
  TcpProbeResult out;
  bool got = false;
  auto p = TcpProbe::Start(&l.loop, addr, port, timeout_ms, [&](TcpProbeResult r) {
    out = std::move(r);
    got = true;
  });
  l.RunUntil([&] { return got; });
  uv_run(&l.loop, UV_RUN_DEFAULT);  // the probe's handles close
  return out;
}

}  // namespace

TEST_CASE("a listener answers; a closed port is refused") {
  TestLoop l;
  int port = 0;
  int s = Listener(&port);
  CHECK(Probe(l, "127.0.0.1", port, 1000).ok());
  ::close(s);
  TcpProbeResult r = Probe(l, "127.0.0.1", port, 1000);
  CHECK(r.error_kind == "refused");
  CHECK(Probe(l, "not-an-address", 80, 1000).error_kind == "error");
}

// A loopback listener whose accept queue is full and never drained: Linux drops further SYNs
// (tcp_abort_on_overflow is 0 by default), so a connect gets no answer at all.
struct FullListener {
  int listener = -1;
  int port = 0;
  std::vector<int> clients;
  FullListener() {
    listener = Listener(&port, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    for (int i = 0; i < 4; ++i) {  // fill the queue; later ones hang in SYN_SENT (non-blocking)
      int c = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);
      clients.push_back(c);
    }
    usleep(50'000);
  }
  ~FullListener() {
    for (int c : clients) ::close(c);
    ::close(listener);
  }
};

TEST_CASE("no answer before the deadline is a timeout") {
  TestLoop l;
  FullListener full;
  TcpProbeResult r = Probe(l, "127.0.0.1", full.port, 200);
  CHECK(r.error_kind == "timeout");
  CHECK(r.elapsed_ms >= 100);  // it waited for the deadline, it did not fail at once
}

// The loop can stall past a deadline (a slow spawn under load, a long callback). An answer that
// came in meanwhile is read before the deadline is judged.
TEST_CASE("an answer that came while the loop stalled past the deadline is no timeout") {
  TestLoop l;
  int port = 0;
  int s = Listener(&port);
  TcpProbeResult out;
  bool got = false;
  auto p = TcpProbe::Start(&l.loop, "127.0.0.1", port, 50, [&](TcpProbeResult r) {
    out = std::move(r);
    got = true;
  });
  usleep(200'000);  // the loop is blocked: the SYN-ACK arrives, the deadline passes
  l.RunUntil([&] { return got; });
  uv_run(&l.loop, UV_RUN_DEFAULT);
  CHECK(out.ok());
  CHECK(out.elapsed_ms >= 200);
  ::close(s);
}

TEST_CASE("a cancelled probe never calls back and closes its handles") {
  TestLoop l;
  FullListener full;
  bool called = false;
  auto p = TcpProbe::Start(&l.loop, "127.0.0.1", full.port, 5000,
                           [&](TcpProbeResult) { called = true; });
  uv_run(&l.loop, UV_RUN_NOWAIT);
  p->Cancel();
  p.reset();
  uv_run(&l.loop, UV_RUN_DEFAULT);
  CHECK_FALSE(called);
}

TEST_CASE("the kinds of connect errors") {
  CHECK(TcpErrorKind(0).empty());
  CHECK(TcpErrorKind(UV_ECONNREFUSED) == "refused");
  CHECK(TcpErrorKind(UV_ENETUNREACH) == "unreachable");
  CHECK(TcpErrorKind(UV_EHOSTUNREACH) == "unreachable");
  CHECK(TcpErrorKind(UV_ETIMEDOUT) == "timeout");
  CHECK(TcpErrorKind(UV_EACCES) == "error");
}

}  // namespace guardian
