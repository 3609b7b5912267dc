// HttpClient against a real HTTP server on loopback (libmicrohttpd, a thread per connection):
// answers, a hanging handler, a refused port, an oversized body, cancellation, many requests at
// once, and a loop that keeps turning while a request hangs.
#include "daemon/http_client.h"

#include <doctest/doctest.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "daemon/curl_lib.h"
#include "tests/unit/test_http_server.h"
#include "tests/unit/test_loop.h"

namespace guardian {
namespace {

// A loopback port with nothing listening: bound, then closed.
int ClosedPort() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

using Loop = TestLoop;

HttpResult Fetch(Loop& l, HttpClient& c, HttpCall req) {
  HttpResult out;
  bool got = false;
  c.Start(req, [&](HttpResult r) {
    out = std::move(r);
    got = true;
  });
  l.RunUntil([&] { return got; });
  return out;
}

}  // namespace

TEST_CASE("answers of every code come back with their body and timings") {
  TestHttpServer srv;
  Loop l;
  HttpClient c(&l.loop);
  HttpCall req;
  req.url = srv.Url("/hello");
  HttpResult r = Fetch(l, c, req);
  CHECK(r.ok());
  CHECK(r.code == 200);
  CHECK(r.body == "GET /hello");
  CHECK(r.total_ms >= r.first_byte_ms);
  req.url = srv.Url("/missing");
  r = Fetch(l, c, req);
  CHECK(r.ok());  // an HTTP answer is not a transport error
  CHECK(r.code == 404);
  req.url = srv.Url("/auth");
  CHECK(Fetch(l, c, req).code == 401);
  req.headers = {"Authorization: Bearer t0k"};
  CHECK(Fetch(l, c, req).code == 200);
  req = HttpCall{};
  req.method = "POST";
  req.url = srv.Url("/token");
  req.body = "grant_type=refresh_token";
  r = Fetch(l, c, req);
  CHECK(r.body == "POST /token");
  l.Close(c);
}

TEST_CASE("a host name goes through libcurl, loaded then, and answers the same") {
  TestHttpServer srv;
  Loop l;
  HttpClient c(&l.loop);
  HttpCall req;
  req.url = srv.Url("/hello");
  CHECK(Fetch(l, c, req).body == "GET /hello");
  CHECK_FALSE(CurlLib::Loaded());  // plain http to 127.0.0.1 needs no libcurl
  req.url = "http://localhost:" + std::to_string(srv.port) + "/hello";
  HttpResult r = Fetch(l, c, req);
  CHECK(CurlLib::Loaded());
  CHECK(r.ok());
  CHECK(r.code == 200);
  CHECK(r.body == "GET /hello");
  req.url = "http://localhost:" + std::to_string(ClosedPort()) + "/";
  CHECK(Fetch(l, c, req).error_kind == "refused");
  l.Close(c);
}

TEST_CASE("a refused port, a hanging server and a body too large fail with their kind") {
  TestHttpServer srv;
  Loop l;
  HttpClient c(&l.loop);
  HttpCall req;
  req.url = "http://127.0.0.1:" + std::to_string(ClosedPort()) + "/";
  HttpResult r = Fetch(l, c, req);
  CHECK(r.error_kind == "refused");
  CHECK(r.code == 0);
  req.url = srv.Url("/hang");
  req.timeout_ms = 200;
  r = Fetch(l, c, req);
  CHECK(r.error_kind == "timeout");
  CHECK(r.total_ms >= 150);
  req = HttpCall{};
  req.url = srv.Url("/big");
  req.max_body_bytes = 1024;
  CHECK(Fetch(l, c, req).error_kind == "too_large");
  req.url = "file:///etc/passwd";  // only http and https
  CHECK(Fetch(l, c, req).error_kind == "error");
  g_release = true;
  l.Close(c);
}

TEST_CASE("the loop keeps turning while a request hangs, and many requests run at once") {
  TestHttpServer srv;
  Loop l;
  HttpClient c(&l.loop);
  uv_timer_t ticker;
  int ticks = 0;
  uv_timer_init(&l.loop, &ticker);
  ticker.data = &ticks;
  uv_timer_start(
      &ticker, [](uv_timer_t* t) { ++*static_cast<int*>(t->data); }, 10, 10);
  HttpCall hang;
  hang.url = srv.Url("/hang");
  hang.timeout_ms = 400;
  bool hung_done = false;
  c.Start(hang, [&](HttpResult r) {
    CHECK(r.error_kind == "timeout");
    hung_done = true;
  });
  int answered = 0;
  for (int i = 0; i < 20; ++i) {
    HttpCall req;
    req.url = srv.Url("/n" + std::to_string(i));
    c.Start(req, [&, i](HttpResult r) {
      CHECK(r.body == "GET /n" + std::to_string(i));
      ++answered;
    });
  }
  CHECK(c.in_flight() == 21);
  l.RunUntil([&] { return hung_done && answered == 20; });
  // The 20 answered while the hanging one was still open, and the timer ran throughout.
  CHECK(ticks >= 10);
  uv_timer_stop(&ticker);
  uv_close(reinterpret_cast<uv_handle_t*>(&ticker), nullptr);
  g_release = true;
  l.Close(c);
}

TEST_CASE("a cancelled request never calls back; Close cancels what is in flight") {
  TestHttpServer srv;
  Loop l;
  HttpClient c(&l.loop);
  HttpCall hang;
  hang.url = srv.Url("/hang");
  hang.timeout_ms = 2000;
  bool called = false;
  uint64_t id = c.Start(hang, [&](HttpResult) { called = true; });
  CHECK(id != 0);
  c.Start(hang, [&](HttpResult) { called = true; });
  // Let both connect, then cancel one and close the client with the other in flight.
  uv_run(&l.loop, UV_RUN_NOWAIT);
  c.Cancel(id);
  CHECK(c.in_flight() == 1);
  g_release = true;
  l.Close(c);
  CHECK_FALSE(called);
  bool refused = false;
  c.Start(hang, [&](HttpResult r) { refused = r.error_kind == "error"; });
  CHECK(refused);  // a closed client answers at once
}

}  // namespace guardian
