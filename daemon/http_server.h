#pragma once
// HttpServer: the API's HTTP/1.1 server on one listening socket (Unix or TCP), on the libuv loop:
// uv streams carry the bytes and http-parser (Debian's libhttp-parser) reads each request, so
// requests are handled on the loop thread with no locks and no TLS library is loaded. A handler
// answers at once or later: a request answered later holds up only its own connection until its
// Responder is called, e.g. from a store-thread completion. Pipelined requests on one connection
// are handled one after another, each seeing the changes of the one before.
//
// Limits that keep a bad client from hurting the daemon: a cap on connections (more are closed
// at once), a deadline for receiving each whole request that also ends idle connections
// (slowloris: a client dripping a byte at a time is never idle), a cap on the request line and
// headers (431), and a body size limit (413).
//
// Thread: loop thread only. Close() before destroying; `closed` runs once all handles are closed.

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/status.h"

namespace guardian {

struct HttpRequest {
  std::string method;
  std::string path;                          // without the query string
  std::map<std::string, std::string> query;  // decoded
  std::string body;
  std::string content_type;
  // Requests with the same `pass` are handed to the handler in one go, with nothing else on the
  // loop running in between: an answer computed for one of them is still current for the others
  // (unless a request in the pass changed something).
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
  size_t max_header_bytes = 64 * 1024;  // request line and headers must fit
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
  // Stops accepting, answers requests still waiting for their handler with 503 and closes every
  // connection and handle.
  void Close(std::function<void()> closed);

  // Requests dispatched since start, for metrics.
  int64_t requests() const { return requests_; }
  // Connections open now, for tests.
  size_t connections() const { return conns_.size(); }

  struct Conn;  // one accepted connection (http_server.cpp)

 private:
  friend class Responder;
  friend struct ConnCallbacks;
  struct Listener;
  void Accept();
  void StartReading(Conn* c);
  void StopReading(Conn* c);
  // Feeds received bytes to the connection's parser; a whole request goes to ready_.
  void Parse(Conn* c, const char* data, size_t len);
  // Hands every ready request to the handler in one pass (the check handle, after each poll).
  void Dispatch();
  void Serve(Conn* c);
  void Answer(Conn* c, HttpResponse response);
  void SendContinue(Conn* c);
  void Send(Conn* c, HttpResponse response, bool close_after);
  static void Written(uv_write_t* req, int status);
  void Drain(Conn* c);
  // After an answer is written: the next pipelined request, or reading again.
  void Resume(Conn* c);
  void Sweep();
  // The one way a connection ends.
  void CloseConn(Conn* c);
  void MaybeClosed();

  uv_loop_t* loop_;
  HttpLimits limits_;
  Handler handler_;
  std::string name_;
  bool unix_ = false;
  Listener* listener_ = nullptr;      // a uv_pipe_t or uv_tcp_t
  uv_check_t* dispatch_ = nullptr;    // hands ready requests to the handler after each poll
  uv_idle_t* no_wait_ = nullptr;      // while requests are ready: the loop must not block in poll
  uv_timer_t* sweep_ = nullptr;       // runs only while connections are open
  std::unique_ptr<char[]> read_buf_;  // shared: each read is parsed before the next
  std::set<Conn*> conns_;
  std::vector<Conn*> ready_;  // connections with a whole request for the handler
  int open_handles_ = 0;
  bool closing_ = false;
  int64_t requests_ = 0;
  time_t date_at_ = 0;
  std::string date_;
  std::function<void()> on_closed_;
};

// The head of an answer: status line, Date, Content-Type, Cache-Control, Content-Length and, when
// asked, "Connection: close" or "Connection: keep-alive". `date` is an IMF-fixdate.
std::string ResponseHead(int status, const std::string& content_type, size_t content_length,
                         const char* connection, const std::string& date);
// Percent-decoding of a path or query part ('+' as a space only in the query).
std::string UrlDecode(std::string_view s, bool plus_is_space);
// "a=1&b=x%20y" -> {a: 1, b: x y}; a key without '=' has an empty value.
std::map<std::string, std::string> DecodeQuery(std::string_view query);

// Creates, binds and listens on a Unix socket at `path` with file mode `mode` and, unless
// `gid` is -1, that group; a stale socket file there is replaced (the caller holds the state
// dir's lock, so no live daemon owns it).
Status ListenUnix(const std::string& path, int mode, int64_t gid, int* fd_out);
// Binds and listens on "HOST:PORT" (numeric; already validated by the config loader).
Status ListenTcp(const std::string& host_port, int* fd_out);

}  // namespace guardian
