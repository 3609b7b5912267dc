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

#include "tests/unit/test_loop.h"

namespace guardian {
namespace {

std::atomic<bool> g_release{false};

MHD_Result Handle(void*, MHD_Connection* c, const char* url, const char* method, const char*,
                  const char*, size_t* upload_size, void** state) {
  if (*state == nullptr) {  // the first call is for the headers only
    static int marker;
    *state = &marker;
    return MHD_YES;
  }
  if (*upload_size > 0) {
    *upload_size = 0;
    return MHD_YES;
  }
  std::string path = url;
  std::string body = std::string(method) + " " + path;
  unsigned code = MHD_HTTP_OK;
  if (path == "/hang") {
    // Until the test lets go (or 3 s), as a server that accepts and never answers.
    for (int i = 0; i < 300 && !g_release; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  } else if (path == "/big") {
    body.assign(64 << 10, 'x');
  } else if (path == "/missing") {
    code = MHD_HTTP_NOT_FOUND;
  } else if (path == "/auth") {
    const char* h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    code = h && std::string(h) == "Bearer t0k" ? MHD_HTTP_OK : MHD_HTTP_UNAUTHORIZED;
  }
  MHD_Response* r =
      MHD_create_response_from_buffer(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
  MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

struct Server {
  MHD_Daemon* d = nullptr;
  int port = 0;
  Server() {
    g_release = false;
    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                         nullptr, nullptr, &Handle, nullptr, MHD_OPTION_END);
    REQUIRE(d != nullptr);
    port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
  }
  ~Server() {
    g_release = true;
    MHD_stop_daemon(d);
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
};

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

HttpResponse Fetch(Loop& l, HttpClient& c, HttpRequest req) {
  HttpResponse out;
  bool got = false;
  c.Start(req, [&](HttpResponse r) {
    out = std::move(r);
    got = true;
  });
  l.RunUntil([&] { return got; });
  return out;
}

}  // namespace

TEST_CASE("answers of every code come back with their body and timings") {
  Server srv;
  Loop l;
  HttpClient c(&l.loop);
  HttpRequest req;
  req.url = srv.Url("/hello");
  HttpResponse r = Fetch(l, c, req);
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
  req = HttpRequest{};
  req.method = "POST";
  req.url = srv.Url("/token");
  req.body = "grant_type=refresh_token";
  r = Fetch(l, c, req);
  CHECK(r.body == "POST /token");
  l.Close(c);
}

TEST_CASE("a refused port, a hanging server and a body too large fail with their kind") {
  Server srv;
  Loop l;
  HttpClient c(&l.loop);
  HttpRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(ClosedPort()) + "/";
  HttpResponse r = Fetch(l, c, req);
  CHECK(r.error_kind == "refused");
  CHECK(r.code == 0);
  req.url = srv.Url("/hang");
  req.timeout_ms = 200;
  r = Fetch(l, c, req);
  CHECK(r.error_kind == "timeout");
  CHECK(r.total_ms >= 150);
  req = HttpRequest{};
  req.url = srv.Url("/big");
  req.max_body_bytes = 1024;
  CHECK(Fetch(l, c, req).error_kind == "too_large");
  req.url = "file:///etc/passwd";  // only http and https
  CHECK(Fetch(l, c, req).error_kind == "error");
  g_release = true;
  l.Close(c);
}

TEST_CASE("the loop keeps turning while a request hangs, and many requests run at once") {
  Server srv;
  Loop l;
  HttpClient c(&l.loop);
  uv_timer_t ticker;
  int ticks = 0;
  uv_timer_init(&l.loop, &ticker);
  ticker.data = &ticks;
  uv_timer_start(
      &ticker, [](uv_timer_t* t) { ++*static_cast<int*>(t->data); }, 10, 10);
  HttpRequest hang;
  hang.url = srv.Url("/hang");
  hang.timeout_ms = 400;
  bool hung_done = false;
  c.Start(hang, [&](HttpResponse r) {
    CHECK(r.error_kind == "timeout");
    hung_done = true;
  });
  int answered = 0;
  for (int i = 0; i < 20; ++i) {
    HttpRequest req;
    req.url = srv.Url("/n" + std::to_string(i));
    c.Start(req, [&, i](HttpResponse r) {
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
  Server srv;
  Loop l;
  HttpClient c(&l.loop);
  HttpRequest hang;
  hang.url = srv.Url("/hang");
  hang.timeout_ms = 2000;
  bool called = false;
  uint64_t id = c.Start(hang, [&](HttpResponse) { called = true; });
  CHECK(id != 0);
  c.Start(hang, [&](HttpResponse) { called = true; });
  // Let both connect, then cancel one and close the client with the other in flight.
  uv_run(&l.loop, UV_RUN_NOWAIT);
  c.Cancel(id);
  CHECK(c.in_flight() == 1);
  g_release = true;
  l.Close(c);
  CHECK_FALSE(called);
  bool refused = false;
  c.Start(hang, [&](HttpResponse r) { refused = r.error_kind == "error"; });
  CHECK(refused);  // a closed client answers at once
}

}  // namespace guardian
