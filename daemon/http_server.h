#pragma once
// HttpServer: one libmicrohttpd daemon on one listening socket, driven by the libuv loop (a
// uv_poll on MHD's epoll fd plus a timer for MHD's own timeouts), so requests are handled on
// the loop thread with no locks. A handler answers at once or later: a request answered later
// is suspended in MHD (holding up nothing else) until its Responder is called, e.g. from a
// store-thread completion.
//
// Limits that keep a bad client from hurting the daemon: a cap on connections, an idle timeout,
// a deadline for receiving each whole request (slowloris: a client dripping a byte at a time
// is never idle, so MHD's idle timeout alone would keep it), a per-connection memory limit
// for headers, and a body size limit (413).
//
// Thread: loop thread only. Close() before destroying; `closed` runs once all handles are closed.

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "daemon/status.h"

struct MHD_Daemon;
struct MHD_Connection;

namespace guardian {

struct HttpRequest {
  std::string method;
  std::string path;                          // without the query string
  std::map<std::string, std::string> query;  // decoded
  std::string body;
  std::string content_type;
  // Requests with the same `pass` were read in one run of the server over its ready
  // connections, with nothing else on the loop running in between: an answer computed for one
  // of them is still current for the others (unless a request in the pass changed something).
  uint64_t pass = 0;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Instead of `body`: one answer sent to many clients (PassCache) without a copy each.
  std::shared_ptr<const std::string> shared_body;
  const std::string& text() const { return shared_body ? *shared_body : body; }
};

// A JSON answer, compact: the answers are for programs (the CLI, scripts, jq); `guardian ...
// --json` pretty-prints. Bytes that are not UTF-8 (evidence quoting a broken file) are replaced.
HttpResponse JsonResponse(int status, const nlohmann::json& body);
// {"error": {"status": N, "message": "..."}}, the shape of every error the API gives.
HttpResponse ErrorResponse(int status, const std::string& message);

// Answers one request, once. Safe to call after the connection went away (it does nothing).
class Responder {
 public:
  struct Slot;
  explicit Responder(std::weak_ptr<Slot> slot) : slot_(std::move(slot)) {}
  void operator()(HttpResponse response) const;

 private:
  std::weak_ptr<Slot> slot_;
};

struct HttpLimits {
  int max_connections = 256;
  int64_t idle_timeout_ms = 10'000;  // also the deadline for receiving one request
  int64_t max_body_bytes = 65'536;
  size_t connection_memory_bytes = 64 * 1024;  // request line and headers must fit
};

class HttpServer {
 public:
  using Handler = std::function<void(const HttpRequest&, Responder)>;

  HttpServer(uv_loop_t* loop, HttpLimits limits, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Serves on `listen_fd` (bound and listening). Takes ownership of the fd, also on failure.
  Status Start(int listen_fd, std::string name);
  // Answers suspended requests with 503, stops MHD, closes the handles.
  void Close(std::function<void()> closed);

  // Requests dispatched since start, for metrics.
  int64_t requests() const { return requests_; }

 private:
  struct Request;
  struct Conn;
  friend struct HttpServerGlue;
  friend class Responder;
  void Run();
  void ScheduleRun();
  void ArmTimer();
  // Shuts down connections that have taken longer than the deadline to send their request.
  void Sweep();
  void MaybeClosed();

  uv_loop_t* loop_;
  HttpLimits limits_;
  Handler handler_;
  std::string name_;
  MHD_Daemon* mhd_ = nullptr;
  uv_poll_t* poll_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  uv_timer_t* sweep_ = nullptr;
  std::set<Conn*> conns_;  // open connections, from MHD's connection notifications
  int open_handles_ = 0;
  bool closing_ = false;
  bool running_ = false;
  int64_t requests_ = 0;
  std::map<Request*, std::shared_ptr<Responder::Slot>> suspended_;
  std::function<void()> on_closed_;
};

// Creates, binds and listens on a Unix socket at `path` with file mode `mode` and, unless
// `gid` is -1, that group; a stale socket file there is replaced (the caller holds the state
// dir's lock, so no live daemon owns it).
Status ListenUnix(const std::string& path, int mode, int64_t gid, int* fd_out);
// Binds and listens on "HOST:PORT" (numeric; already validated by the config loader).
Status ListenTcp(const std::string& host_port, int* fd_out);

}  // namespace guardian
