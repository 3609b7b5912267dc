// Fuzzes the API's HTTP server, HttpServer, on the raw bytes a client sends: each input goes
// down a real Unix socket in one write, then the client's end of writing, and the loop runs
// until the server has closed the connection. The handler answers GETs at once and everything
// else from a timer, so answers given later meet pipelined bytes, limits and closing too.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "daemon/http_server.h"

namespace {

uv_loop_t g_loop;
guardian::HttpServer* g_server = nullptr;
std::string g_path;

// Answers `respond` when the timer fires, then frees itself.
struct Later {
  uv_timer_t timer;
  guardian::Responder respond;
  std::string path;
};

void Handle(const guardian::HttpRequest& req, guardian::Responder respond) {
  if (req.method == "GET") {
    return respond(guardian::JsonResponse(200, {{"path", req.path}, {"query", req.query}}));
  }
  auto* later = new Later{{}, std::move(respond), req.path};
  uv_timer_init(&g_loop, &later->timer);
  later->timer.data = later;
  uv_timer_start(
      &later->timer,
      [](uv_timer_t* t) {
        auto* l = static_cast<Later*>(t->data);
        l->respond(guardian::ErrorResponse(409, "later: " + l->path));
        uv_close(reinterpret_cast<uv_handle_t*>(t),
                 [](uv_handle_t* h) { delete static_cast<Later*>(h->data); });
      },
      0, 0);
}

void Setup() {
  uv_loop_init(&g_loop);
  char dir[] = "/tmp/fuzz-http-XXXXXX";
  if (!mkdtemp(dir)) std::abort();
  g_path = std::string(dir) + "/api.sock";
  guardian::HttpLimits limits;
  limits.max_body_bytes = 256;
  limits.max_header_bytes = 1024;
  limits.idle_timeout_ms = 2000;  // a backstop only: every input ends with the client's EOF
  g_server = new guardian::HttpServer(&g_loop, limits, Handle);
  int fd = -1;
  if (!guardian::ListenUnix(g_path, 0600, -1, &fd).ok()) std::abort();
  if (!g_server->Start(fd, "fuzz").ok()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (!g_server) Setup();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, g_path.c_str(), g_path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) std::abort();
  // Inputs are far below the socket's buffer, so one write takes all of it.
  if (size > 0 && ::send(fd, data, size, MSG_NOSIGNAL) != static_cast<ssize_t>(size)) std::abort();
  ::shutdown(fd, SHUT_WR);
  // Every way through ends with the server closing the connection: after the client's EOF it
  // has nothing more to read, once any request with the handler is answered.
  char sink[65536];
  bool closed = false;
  while (!closed) {
    uv_run(&g_loop, UV_RUN_ONCE);
    ssize_t n;
    while ((n = ::recv(fd, sink, sizeof sink, MSG_DONTWAIT)) > 0) {
    }
    closed = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }
  ::close(fd);
  return 0;
}
