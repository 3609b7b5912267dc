#pragma once
// EndpointProbe: "does this endpoint answer?" for the general checks (process, http, tcp): a TCP
// connect to HOST:PORT, or an HTTP GET whose status is under 400, within a timeout. Probes of
// one check may overlap (the schedule's and an incident's); each runs to its own answer.
// Destroying the object cancels what is in flight without calling back.
//
// Thread: loop thread only.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace guardian {

class HttpClient;
class TcpProbe;

struct Endpoint {
  std::string host = "127.0.0.1";  // numeric for a TCP probe; a name is fine in a URL
  int port = 0;
  std::string url;  // set: an HTTP GET of this URL; empty: a TCP connect to host:port
  std::vector<std::string> headers;  // HTTP only: "Name: value", sent with the GET
  int64_t timeout_ms = 1000;
  std::string Describe() const;  // "http://127.0.0.1:8080/" or "127.0.0.1:8080"
};

struct EndpointAnswer {
  bool ok = false;
  // "answered 200 in 3 ms", "answered 503 in 2 ms: BODY" (its start), "refused", ...
  std::string what;
  bool timed_out = false;  // no answer within the timeout (else a failure came back sooner)
};

class EndpointProbe {
 public:
  EndpointProbe(uv_loop_t* loop, HttpClient* http, Endpoint endpoint);
  ~EndpointProbe();
  EndpointProbe(const EndpointProbe&) = delete;
  EndpointProbe& operator=(const EndpointProbe&) = delete;

  void Run(std::function<void(EndpointAnswer)> done);
  const Endpoint& endpoint() const { return endpoint_; }

 private:
  uv_loop_t* loop_;
  HttpClient* http_;
  Endpoint endpoint_;
  struct Tcp {
    std::shared_ptr<TcpProbe> probe;
    std::shared_ptr<bool> finished;
  };
  std::vector<Tcp> tcp_;
  std::vector<uint64_t> requests_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// The URL of an HTTP GET of `path` on host:port (an IPv6 host in brackets).
std::string EndpointUrl(const std::string& host, int port, const std::string& path);

}  // namespace guardian
