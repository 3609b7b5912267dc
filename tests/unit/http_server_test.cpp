// HttpServer on a real loop and real sockets (Unix, and TCP on loopback): clients on a thread
// write raw bytes, and their answers are read back with http-parser. Pipelining, answers given
// later, the limits (413, 431, 400, connections, the request deadline) and Close().
#include "daemon/http_server.h"

#include <doctest/doctest.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/loopback.h"
#include "tests/unit/temp_dir.h"
#include "tests/unit/test_loop.h"

namespace guardian {
namespace {

struct Answer {
  int status = 0;
  std::string body;
  std::string connection;  // the Connection header, if any
  bool has_date = false;
};

// Reads answers from `fd` until `want` are whole, the peer closes or 5 s pass. `*closed` says
// whether the peer closed.
std::vector<Answer> ReadAnswers(int fd, size_t want, bool* closed = nullptr) {
  struct State {
    std::vector<Answer> answers;
    Answer cur;
    std::string field;
  } st;
  http_parser_settings s{};
  s.on_header_field = [](http_parser* p, const char* at, size_t len) {
    static_cast<State*>(p->data)->field.assign(at, len);
    return 0;
  };
  s.on_header_value = [](http_parser* p, const char* at, size_t len) {
    auto* st = static_cast<State*>(p->data);
    if (st->field == "Connection") st->cur.connection.assign(at, len);
    if (st->field == "Date") st->cur.has_date = true;
    return 0;
  };
  s.on_body = [](http_parser* p, const char* at, size_t len) {
    static_cast<State*>(p->data)->cur.body.append(at, len);
    return 0;
  };
  s.on_message_complete = [](http_parser* p) {
    auto* st = static_cast<State*>(p->data);
    st->cur.status = static_cast<int>(p->status_code);
    st->answers.push_back(std::move(st->cur));
    st->cur = Answer{};
    return 0;
  };
  http_parser p;
  http_parser_init(&p, HTTP_RESPONSE);
  p.data = &st;
  if (closed) *closed = false;
  char buf[4096];
  while (st.answers.size() < want) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (closed) *closed = n == 0 || errno == ECONNRESET;
      break;
    }
    http_parser_execute(&p, &s, buf, static_cast<size_t>(n));
    REQUIRE(HTTP_PARSER_ERRNO(&p) == HPE_OK);
  }
  return st.answers;
}

// Whether the peer closes `fd` (EOF or reset) within 5 s, reading and dropping what comes.
bool ClosedByPeer(int fd) {
  char buf[4096];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    if (n < 0) return false;  // the 5 s receive timeout
  }
}

void SetTimeout(int fd) {
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

void Send(int fd, const std::string& bytes) {
  REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(bytes.size()));
}

// A server on a Unix socket in a temp dir. `on` answers; every request is kept in `seen`.
struct Fixture {
  TestLoop l;
  TempDir dir;
  std::string path;
  std::vector<HttpRequest> seen;
  std::function<void(const HttpRequest&, Responder)> on = [](const HttpRequest& r, Responder re) {
    re(JsonResponse(200, {{"path", r.path}}));
  };
  HttpServer server;

  explicit Fixture(HttpLimits limits = {})
      : path((dir.path / "api.sock").string()),
        server(&l.loop, limits, [this](const HttpRequest& r, Responder re) {
          seen.push_back(r);
          on(r, std::move(re));
        }) {
    int fd = -1;
    REQUIRE(ListenUnix(path, 0600, -1, &fd).ok());
    REQUIRE(server.Start(fd, "test").ok());
  }
  ~Fixture() { l.Close(server); }

  int Connect() {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path.c_str());
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    SetTimeout(fd);
    return fd;
  }

  // On a new connection: sends `bytes`, reads up to `want` answers (fewer if the server closes
  // first; `*closed` says whether it did), closes. From a WithClient thread.
  std::vector<Answer> Exchange(const std::string& bytes, size_t want, bool* closed = nullptr) {
    int fd = Connect();
    Send(fd, bytes);
    auto got = ReadAnswers(fd, want, closed);
    ::close(fd);
    return got;
  }

  // Runs the loop while `client` runs on a thread, until it returns.
  void WithClient(const std::function<void()>& client) {
    std::atomic<bool> done{false};
    std::thread t([&] {
      client();
      done = true;
    });
    uv_timer_t tick;  // the loop must look at `done` even when nothing else happens
    uv_timer_init(&l.loop, &tick);
    uv_timer_start(
        &tick, [](uv_timer_t*) {}, 5, 5);
    l.RunUntil([&] { return done.load(); });
    t.join();
    bool closed = false;
    tick.data = &closed;
    uv_close(reinterpret_cast<uv_handle_t*>(&tick),
             [](uv_handle_t* h) { *static_cast<bool*>(h->data) = true; });
    l.RunUntil([&] { return closed; });
  }
};

const char* kGet = "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n";

TEST_CASE("pipelined requests are handled one after another, each after the answer before") {
  Fixture f;
  std::vector<std::string> order;  // loop thread
  f.on = [&](const HttpRequest& r, Responder re) {
    order.push_back("handle " + r.path);
    re(JsonResponse(200, {{"path", r.path}}));
    order.push_back("answered " + r.path);
  };
  std::vector<Answer> got;
  bool closed = false;
  f.WithClient([&] {
    // Asks for one answer more than there are requests: the last one closes the connection.
    got = f.Exchange(
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        "GET /c?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        4, &closed);
  });
  REQUIRE(got.size() == 3);
  CHECK(got[0].body == "{\"path\":\"/a\"}\n");
  CHECK(got[1].body == "{\"path\":\"/b\"}\n");
  CHECK(got[2].body == "{\"path\":\"/c\"}\n");
  CHECK(got[0].has_date);
  CHECK(got[0].connection.empty());
  CHECK(got[2].connection == "close");
  CHECK(closed);
  REQUIRE(f.seen.size() == 3);
  CHECK(f.seen[1].method == "POST");
  CHECK(f.seen[1].body == "hello");
  CHECK(order == std::vector<std::string>{"handle /a", "answered /a", "handle /b", "answered /b",
                                          "handle /c", "answered /c"});
  // Each came after the answer before it: never in the same pass.
  CHECK(f.seen[0].pass != f.seen[1].pass);
  CHECK(f.seen[1].pass != f.seen[2].pass);
  CHECK(f.server.requests() == 3);
}

TEST_CASE("requests on two connections that arrive together share a pass") {
  Fixture f;
  int a = f.Connect();
  int b = f.Connect();
  // Both are accepted, then both send before the loop looks again.
  f.l.RunUntil([&] { return f.server.connections() == 2; });
  Send(a, kGet);
  Send(b, kGet);
  f.l.RunUntil([&] { return f.seen.size() == 2; });
  CHECK(f.seen[0].pass == f.seen[1].pass);
  std::vector<Answer> ga, gb;
  f.WithClient([&] {
    ga = ReadAnswers(a, 1);
    gb = ReadAnswers(b, 1);
  });
  CHECK(ga.size() == 1);
  CHECK(gb.size() == 1);
  ::close(a);
  ::close(b);
}

TEST_CASE("an answer given later holds up only its own connection") {
  Fixture f;
  std::optional<Responder> later;
  f.on = [&](const HttpRequest& r, Responder re) {
    if (r.path == "/slow") {
      later = std::move(re);
    } else {
      re(JsonResponse(200, {{"path", r.path}}));
    }
  };
  int slow = f.Connect();
  Send(slow, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
  f.l.RunUntil([&] { return later.has_value(); });
  std::vector<Answer> fast;
  f.WithClient([&] { fast = f.Exchange(kGet, 1); });
  REQUIRE(fast.size() == 1);
  CHECK(fast[0].status == 200);
  (*later)(ErrorResponse(409, "late"));
  (*later)(JsonResponse(200, {}));  // a second answer is ignored
  std::vector<Answer> got;
  f.WithClient([&] { got = ReadAnswers(slow, 1); });
  REQUIRE(got.size() == 1);
  CHECK(got[0].status == 409);
  CHECK(got[0].body.find("late") != std::string::npos);
  ::close(slow);
}

TEST_CASE("a declared body over the limit is answered 413 unread, and the connection closed") {
  HttpLimits limits;
  limits.max_body_bytes = 100;
  Fixture f(limits);
  std::string smuggled;
  for (int i = 0; i < 10; ++i) smuggled += kGet;
  std::vector<Answer> got;
  bool closed = false;
  f.WithClient([&] {
    got = f.Exchange("POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                         std::to_string(smuggled.size()) + "\r\n\r\n" + smuggled,
                     2, &closed);
  });
  REQUIRE(got.size() == 1);
  CHECK(got[0].status == 413);
  CHECK(got[0].connection == "close");
  CHECK(got[0].body.find("request body over 100 bytes") != std::string::npos);
  CHECK(closed);
  CHECK(f.seen.empty());
}

TEST_CASE("a chunked body over the limit is read, dropped and answered 413") {
  HttpLimits limits;
  limits.max_body_bytes = 100;
  Fixture f(limits);
  std::vector<Answer> got;
  f.WithClient([&] {
    std::string chunk(80, 'z');
    got = f.Exchange("POST /hold HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n" +
                         chunk + "\r\n50\r\n" + chunk + "\r\n0\r\n\r\n" + kGet,
                     2);
  });
  REQUIRE(got.size() == 2);
  CHECK(got[0].status == 413);
  CHECK(got[1].status == 200);  // the connection goes on: the whole body was read
  REQUIRE(f.seen.size() == 1);
  CHECK(f.seen[0].path == "/v1/health");
}

TEST_CASE("a chunked body is put together; its trailers change nothing") {
  Fixture f;
  std::vector<Answer> got;
  f.WithClient([&] {
    got = f.Exchange(
        "POST /b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n"
        "Content-Type: text/evil\r\nExpect: 100-continue\r\n\r\n",
        1);
  });
  REQUIRE(got.size() == 1);
  CHECK(got[0].status == 200);
  REQUIRE(f.seen.size() == 1);
  CHECK(f.seen[0].body == "{\"a\":1}");
  CHECK(f.seen[0].content_type == "application/json");
}

TEST_CASE("Expect: 100-continue gets its interim answer before the body is sent") {
  Fixture f;
  std::string interim;
  std::vector<Answer> got;
  f.WithClient([&] {
    int fd = f.Connect();
    Send(fd, "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
    char buf[256];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) interim.assign(buf, static_cast<size_t>(n));
    Send(fd, "{}");
    got = ReadAnswers(fd, 1);
    ::close(fd);
  });
  CHECK(interim == "HTTP/1.1 100 Continue\r\n\r\n");
  REQUIRE(got.size() == 1);
  CHECK(got[0].status == 200);
  REQUIRE(f.seen.size() == 1);
  CHECK(f.seen[0].body == "{}");
}

TEST_CASE("HEAD gets the head with the body's length and no body") {
  Fixture f;
  std::string raw;
  f.WithClient([&] {
    int fd = f.Connect();
    Send(fd, "HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) raw.append(buf, static_cast<size_t>(n));
    ::close(fd);
  });
  REQUIRE(raw.size() > 4);
  CHECK(raw.substr(raw.size() - 4) == "\r\n\r\n");
  CHECK(raw.find("Content-Length: 14\r\n") != std::string::npos);  // {"path":"/h"}\n
  REQUIRE(f.seen.size() == 1);
  CHECK(f.seen[0].method == "HEAD");
}

TEST_CASE("path and query are percent-decoded") {
  Fixture f;
  f.WithClient([&] {
    f.Exchange("GET /v1/checks/a%20b?x=1&y=a+b%21&z&&%zz=q HTTP/1.1\r\nHost: x\r\n\r\n", 1);
  });
  REQUIRE(f.seen.size() == 1);
  CHECK(f.seen[0].path == "/v1/checks/a b");
  CHECK(f.seen[0].query ==
        std::map<std::string, std::string>{{"x", "1"}, {"y", "a b!"}, {"z", ""}, {"%zz", "q"}});
  CHECK(UrlDecode("a+b%2", false) == "a+b%2");
  CHECK(DecodeQuery("").empty());
}

TEST_CASE("headers over the limit get 431; bytes that are not HTTP get 400; both are closed") {
  HttpLimits limits;
  limits.max_header_bytes = 256;
  Fixture f(limits);
  std::vector<Answer> big, junk;
  bool big_closed = false, junk_closed = false;
  f.WithClient([&] {
    big = f.Exchange("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(400, 'a') + "\r\n\r\n", 2,
                     &big_closed);
    junk = f.Exchange("\x16\x03\x01 not http at all\r\n\r\n", 2, &junk_closed);
  });
  REQUIRE(big.size() == 1);
  CHECK(big[0].status == 431);
  CHECK(big_closed);
  REQUIRE(junk.size() == 1);
  CHECK(junk[0].status == 400);
  CHECK(junk[0].body.find("malformed request") != std::string::npos);
  CHECK(junk_closed);
  CHECK(f.seen.empty());
}

TEST_CASE("HTTP/1.0 without keep-alive is closed after its answer; with it, kept") {
  Fixture f;
  std::vector<Answer> once, kept;
  bool once_closed = false;
  f.WithClient([&] {
    once = f.Exchange("GET /a HTTP/1.0\r\n\r\n", 2, &once_closed);
    int fd = f.Connect();
    Send(fd, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    kept = ReadAnswers(fd, 1);
    Send(fd, "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    auto more = ReadAnswers(fd, 1);
    kept.insert(kept.end(), more.begin(), more.end());
    ::close(fd);
  });
  REQUIRE(once.size() == 1);
  CHECK(once_closed);
  REQUIRE(kept.size() == 2);
  CHECK(kept[0].connection == "keep-alive");
  CHECK(kept[1].body == "{\"path\":\"/b\"}\n");
}

TEST_CASE("connections over the cap are closed at once; the others are served") {
  HttpLimits limits;
  limits.max_connections = 2;
  Fixture f(limits);
  int a = f.Connect();
  int b = f.Connect();
  f.l.RunUntil([&] { return f.server.connections() == 2; });
  bool third_closed = false;
  std::vector<Answer> got;
  f.WithClient([&] {
    int c = f.Connect();  // the kernel accepts it; the server closes it
    third_closed = ClosedByPeer(c);
    ::close(c);
    Send(a, kGet);
    got = ReadAnswers(a, 1);
  });
  CHECK(third_closed);
  CHECK(got.size() == 1);
  ::close(a);
  ::close(b);
}

TEST_CASE(
    "a request that does not arrive whole within the deadline is cut off; so is an idle one") {
  HttpLimits limits;
  limits.idle_timeout_ms = 300;
  Fixture f(limits);
  bool drip_closed = false, idle_closed = false;
  std::vector<Answer> drip_answers;
  f.WithClient([&] {
    int drip = f.Connect();
    int idle = f.Connect();
    Send(drip, "GET / HTTP/1.1\r\nX-Drip: ");
    // Never idle, never done: a byte every 50 ms until the server gives up (at most 3 s).
    for (int i = 0; i < 60; ++i) {
      if (::send(drip, "a", 1, MSG_NOSIGNAL) != 1) break;
      usleep(50'000);
    }
    drip_answers = ReadAnswers(drip, 1, &drip_closed);
    idle_closed = ClosedByPeer(idle);
    ::close(drip);
    ::close(idle);
  });
  CHECK(drip_closed);
  CHECK(drip_answers.empty());
  CHECK(idle_closed);
  CHECK(f.seen.empty());
  CHECK(f.server.connections() == 0);
}

TEST_CASE("Close answers a request still with the handler 503, and a late answer does nothing") {
  TestLoop l;
  TempDir dir;
  std::string path = (dir.path / "api.sock").string();
  std::optional<Responder> later;
  HttpServer server(&l.loop, {}, [&](const HttpRequest&, Responder re) { later = std::move(re); });
  int lfd = -1;
  REQUIRE(ListenUnix(path, 0600, -1, &lfd).ok());
  REQUIRE(server.Start(lfd, "test").ok());
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  SetTimeout(fd);
  Send(fd, kGet);
  l.RunUntil([&] { return later.has_value(); });
  l.Close(server);
  (*later)(JsonResponse(200, {}));  // the connection is gone: nothing happens
  bool closed = false;
  auto got = ReadAnswers(fd, 2, &closed);
  REQUIRE(got.size() == 1);
  CHECK(got[0].status == 503);
  CHECK(closed);
  ::close(fd);
}

TEST_CASE("a TCP listener on loopback serves the same way") {
  TestLoop l;
  HttpServer server(&l.loop, {}, [](const HttpRequest& r, Responder re) {
    re(JsonResponse(200, {{"path", r.path}}));
  });
  int port = 0;
  int lfd = ListenOnLoopback(&port);
  REQUIRE(server.Start(lfd, "tcp").ok());
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  std::atomic<bool> done{false};
  std::vector<Answer> got;
  std::thread t([&] {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    SetTimeout(fd);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      Send(fd, "GET /t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      got = ReadAnswers(fd, 1);
    }
    ::close(fd);
    done = true;
  });
  uv_timer_t tick;
  uv_timer_init(&l.loop, &tick);
  uv_timer_start(
      &tick, [](uv_timer_t*) {}, 5, 5);
  l.RunUntil([&] { return done.load(); });
  t.join();
  uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  l.Close(server);
  REQUIRE(got.size() == 1);
  CHECK(got[0].body == "{\"path\":\"/t\"}\n");
}

TEST_CASE("ResponseHead frames an answer") {
  CHECK(ResponseHead(404, "application/json", 12, nullptr, "Mon, 07 Dec 2026 18:00:00 GMT") ==
        "HTTP/1.1 404 Not Found\r\nDate: Mon, 07 Dec 2026 18:00:00 GMT\r\n"
        "Content-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: 12\r\n\r\n");
  CHECK(ResponseHead(503, "text/plain", 0, "close", "D").find("\r\nConnection: close\r\n\r\n") !=
        std::string::npos);
}

}  // namespace
}  // namespace guardian
