#pragma once
// HttpClient: HTTP requests for probes and playbooks, on the libuv loop, so a request never
// blocks the loop, whatever the server does. Every callback runs on the loop thread.
//
// Plain http:// to an IP address (most probes) goes through PlainHttp: uv_tcp and http-parser,
// no libcurl. Everything else (https, host names, streams, no deadline) goes through libcurl's
// multi interface, loaded on first use (curl_lib.h): curl tells which sockets to watch (one uv_poll
// each) and when to wake it (one uv_timer); names are looked up by curl's asynchronous resolver.
//
// One object owns the CURLM, its timer and its polls; Close() cancels what is in flight (their
// callbacks are not called), closes every handle and calls `closed` once they are all gone.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace guardian {

struct HttpCall {
  std::string method = "GET";
  std::string url;                   // http:// or https:// only
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // sent when not empty
  int64_t timeout_ms = 5000;         // the whole request; 0: none (a stream, kept alive)
  int64_t connect_timeout_ms = 0;    // 0: timeout_ms (or curl's default without one)
  size_t max_body_bytes = 1 << 20;   // a longer answer fails as "too_large"
  // A streamed answer (an etcd watch): each piece of the body is handed to `on_data` on the
  // loop thread as it arrives, and HttpResult::body stays empty. max_body_bytes then bounds
  // what may wait undelivered at once. `on_data` may cancel the request or start others.
  std::function<void(std::string_view)> on_data;
  // TLS for https: the CA bundle the server's certificate must chain to, and a client
  // certificate and key. Empty: the system's CAs, no client certificate.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

struct HttpResult {
  // "" on an HTTP answer (whatever its code); else why none came: "refused", "timeout", "dns",
  // "unreachable", "too_large" or "error".
  std::string error_kind;
  std::string error;  // curl's message for it
  long code = 0;      // the HTTP status, 0 without an answer
  std::string body;
  int64_t total_ms = 0;    // start to the end of the answer (or of the failure)
  int64_t connect_ms = 0;  // to the TCP connection
  int64_t first_byte_ms = 0;
  bool ok() const { return error_kind.empty(); }
};

class HttpClient {
 public:
  explicit HttpClient(uv_loop_t* loop);
  ~HttpClient();  // Close() first; destroying an open client is a bug (it aborts)
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts a request; `done` runs once on the loop thread, unless the request is cancelled.
  // Returns an id for Cancel(), or 0 (with `done` already called) when it cannot start.
  uint64_t Start(const HttpCall& req, std::function<void(HttpResult)> done);
  void Cancel(uint64_t id);
  size_t in_flight() const;

  void Close(std::function<void()> closed);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace guardian
