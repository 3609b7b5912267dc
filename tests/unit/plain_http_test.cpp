// PlainHttp against a scripted server on a real loopback socket: the bytes of the request on
// the wire, and answers of every framing (sized, chunked, ended by the close, after
// "100 Continue", to HEAD) or broken ones. This binary never needs libcurl, and checks that it
// was never loaded.
#include "daemon/plain_http.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "daemon/curl_lib.h"
#include "tests/unit/loopback.h"
#include "tests/unit/test_loop.h"

namespace guardian {
namespace {

// Accepts one connection, reads the request (headers and a Content-Length body), writes
// `answer` and closes. `request` holds what came.
struct OneShotServer {
  int fd = -1;
  int port = 0;
  std::string request;
  std::thread thread;

  explicit OneShotServer(std::string answer) {
    fd = ListenOnLoopback(&port);
    thread = std::thread([this, answer] {
      int c = ::accept(fd, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      size_t want = std::string::npos;
      while (want == std::string::npos || request.size() < want) {
        pollfd p{c, POLLIN, 0};
        if (::poll(&p, 1, 2000) <= 0) break;
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
        size_t end = request.find("\r\n\r\n");
        if (end != std::string::npos && want == std::string::npos) {
          size_t cl = request.find("Content-Length: ");
          size_t body = cl == std::string::npos ? 0 : std::stoul(request.substr(cl + 16));
          want = end + 4 + body;
        }
      }
      if (!answer.empty()) (void)::write(c, answer.data(), answer.size());
      ::close(c);
    });
  }
  ~OneShotServer() {
    ::shutdown(fd, SHUT_RDWR);
    if (thread.joinable()) thread.join();
    ::close(fd);
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
};

HttpResult Fetch(TestLoop& l, HttpCall req) {
  UrlParts url;
  REQUIRE(PlainHttp::Suits(req, &url));
  HttpResult out;
  bool got = false;
  auto p = PlainHttp::Start(&l.loop, req, url, [&](HttpResult r) {
    out = std::move(r);
    got = true;
  });
  CHECK_FALSE(got);  // never inside Start
  l.RunUntil([&] { return got; });
  uv_run(&l.loop, UV_RUN_NOWAIT);  // its handles close
  return out;
}

HttpResult FetchAnswer(const std::string& answer, HttpCall req = {}) {
  OneShotServer srv(answer);
  TestLoop l;
  if (req.url.empty()) req.url = srv.Url("/");
  return Fetch(l, req);
}

}  // namespace

TEST_CASE("the request on the wire: target, Host, the caller's headers, a body with its length") {
  OneShotServer srv("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  TestLoop l;
  HttpCall req;
  req.method = "POST";
  req.url = srv.Url("/a/b?c=1&d=2#frag");
  req.headers = {"Authorization: Bearer t0k"};
  req.body = "x=1";
  HttpResult r = Fetch(l, req);
  CHECK(r.ok());
  CHECK(r.code == 200);
  CHECK(r.body == "ok");
  std::string port = std::to_string(srv.port);
  CHECK(srv.request.rfind("POST /a/b?c=1&d=2 HTTP/1.1\r\n", 0) == 0);
  CHECK(srv.request.find("\r\nHost: 127.0.0.1:" + port + "\r\n") != std::string::npos);
  CHECK(srv.request.find("\r\nAuthorization: Bearer t0k\r\n") != std::string::npos);
  CHECK(srv.request.find("\r\nContent-Type: application/x-www-form-urlencoded\r\n") !=
        std::string::npos);
  CHECK(srv.request.find("\r\nContent-Length: 3\r\n") != std::string::npos);
  CHECK(srv.request.find("\r\nConnection: close\r\n\r\nx=1") != std::string::npos);
}

TEST_CASE("answers of every framing are read to their end") {
  SUBCASE("chunked") {
    HttpResult r = FetchAnswer(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    CHECK(r.ok());
    CHECK(r.body == "abcde");
  }
  SUBCASE("ended by the close") {
    HttpResult r = FetchAnswer("HTTP/1.0 503 Service Unavailable\r\n\r\nbusy now");
    CHECK(r.ok());
    CHECK(r.code == 503);
    CHECK(r.body == "busy now");
  }
  SUBCASE("after 100 Continue") {
    HttpResult r = FetchAnswer(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone");
    CHECK(r.ok());
    CHECK(r.code == 201);
    CHECK(r.body == "done");
  }
  SUBCASE("204 with a Content-Length, which has no body all the same") {
    HttpResult r = FetchAnswer("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n");
    CHECK(r.ok());
    CHECK(r.code == 204);
  }
  SUBCASE("chunked with a Content-Length too: the chunks count") {
    HttpResult r = FetchAnswer(
        "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\nhi\r\n0\r\n\r\n");
    CHECK(r.ok());
    CHECK(r.body == "hi");
  }
  SUBCASE("to HEAD, whose Content-Length announces a body that never comes") {
    HttpCall req;
    req.method = "HEAD";
    OneShotServer srv("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
    TestLoop l;
    req.url = srv.Url("/");
    HttpResult r = Fetch(l, req);
    CHECK(r.ok());
    CHECK(r.body.empty());
  }
}

TEST_CASE("broken answers fail with their kind, and the body is bounded") {
  CHECK(FetchAnswer("SSH-2.0-OpenSSH_9.2\r\n").error_kind == "error");
  CHECK(FetchAnswer("").error == "the server closed the connection without answering");
  HttpResult cut = FetchAnswer("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  CHECK(cut.error_kind == "error");
  CHECK(cut.error == "the connection closed before the end of the answer");
  HttpCall small;
  small.max_body_bytes = 4;
  CHECK(FetchAnswer("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n12345", small).error_kind ==
        "too_large");
}

TEST_CASE("a refused port and a server that never answers") {
  int port = 0;
  {
    OneShotServer gone("");
    port = gone.port;
  }  // closed: nothing listens there now
  TestLoop l;
  HttpCall req;
  req.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  HttpResult r = Fetch(l, req);
  CHECK(r.error_kind == "refused");

  // Listens, never accepts: the kernel completes the handshake and nothing answers.
  int s = ListenOnLoopback(&port);
  req.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  req.timeout_ms = 150;
  r = Fetch(l, req);
  CHECK(r.error_kind == "timeout");
  CHECK(r.total_ms >= 150);
  ::close(s);
}

TEST_CASE("a cancelled request never calls back and leaves no handle open") {
  OneShotServer srv("");
  TestLoop l;
  HttpCall req;
  req.url = srv.Url("/");
  UrlParts url;
  REQUIRE(PlainHttp::Suits(req, &url));
  bool called = false;
  auto p = PlainHttp::Start(&l.loop, req, url, [&](HttpResult) { called = true; });
  uv_run(&l.loop, UV_RUN_NOWAIT);
  p->Cancel();
  p.reset();
  uv_run(&l.loop, UV_RUN_DEFAULT);  // returns once every handle is closed
  CHECK_FALSE(called);
}

TEST_CASE("only plain http to an IP address goes this way; libcurl was never loaded") {
  UrlParts u;
  HttpCall req;
  req.url = "http://[::1]:8080/x";
  CHECK(PlainHttp::Suits(req, &u));
  CHECK(u.host == "::1");
  CHECK(u.port == 8080);
  for (const char* url : {"https://127.0.0.1/", "http://localhost/", "http://u:p@127.0.0.1/",
                          "ftp://127.0.0.1/", "http://127.0.0.1:99999/"}) {
    req.url = url;
    CHECK_FALSE(PlainHttp::Suits(req, &u));
  }
  req.url = "http://127.0.0.1/";
  req.headers = {"Accept:"};  // curl's "drop this header"
  CHECK_FALSE(PlainHttp::Suits(req, &u));
  req.headers = {"X-A: 1\r\nX-B: 2"};
  CHECK_FALSE(PlainHttp::Suits(req, &u));
  req.headers = {};
  req.on_data = [](std::string_view) {};
  CHECK_FALSE(PlainHttp::Suits(req, &u));
  req.on_data = nullptr;
  req.timeout_ms = 0;  // no deadline: libcurl's TCP keep-alive finds a vanished peer
  CHECK_FALSE(PlainHttp::Suits(req, &u));
  // Every request above went out and came back without it.
  CHECK_FALSE(CurlLib::Loaded());
}

}  // namespace guardian
