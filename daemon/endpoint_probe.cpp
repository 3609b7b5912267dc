#include "daemon/endpoint_probe.h"

#include <algorithm>

#include "daemon/http_client.h"
#include "daemon/tcp_probe.h"

namespace guardian {

std::string Endpoint::Describe() const {
  if (!url.empty()) return url;
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

std::string EndpointUrl(const std::string& host, int port, const std::string& path) {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  std::string p = path.empty() || path[0] != '/' ? "/" + path : path;
  return "http://" + h + ":" + std::to_string(port) + p;
}

namespace {

// At most `max` bytes of `text` on one line: control characters become spaces, runs of spaces
// one space.
std::string OneLine(const std::string& text, size_t max) {
  std::string out;
  for (char c : text) {
    if (out.size() >= max) break;
    char x = static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? ' ' : c;
    if (x == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += x;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

EndpointProbe::EndpointProbe(uv_loop_t* loop, HttpClient* http, Endpoint endpoint)
    : loop_(loop), http_(http), endpoint_(std::move(endpoint)) {}

EndpointProbe::~EndpointProbe() {
  *alive_ = false;
  for (auto& t : tcp_) t.probe->Cancel();
  if (http_) {
    for (uint64_t id : requests_) http_->Cancel(id);
  }
}

void EndpointProbe::Run(std::function<void(EndpointAnswer)> done) {
  int64_t timeout = endpoint_.timeout_ms;
  if (!endpoint_.url.empty()) {
    if (!http_) return done({false, "no HTTP client in this daemon"});
    HttpCall call;
    call.url = endpoint_.url;
    call.headers = endpoint_.headers;
    call.timeout_ms = timeout;
    call.max_body_bytes = 64 << 10;
    auto id = std::make_shared<uint64_t>(0);
    *id = http_->Start(call, [this, alive = alive_, id, timeout, done](HttpResult r) {
      if (*alive)
        requests_.erase(std::remove(requests_.begin(), requests_.end(), *id), requests_.end());
      EndpointAnswer a;
      if (!r.ok()) {
        a.timed_out = r.error_kind == "timeout";
        a.what = a.timed_out ? "no answer within " + std::to_string(timeout) + " ms"
                             : r.error_kind + " (" + r.error + ")";
      } else {
        a.ok = r.code < 400;
        a.what = "answered " + std::to_string(r.code) + " in " + std::to_string(r.total_ms) + " ms";
        // A server's error page usually says why; its start goes into the evidence.
        if (!a.ok) {
          std::string why = OneLine(r.body, 200);
          if (!why.empty()) a.what += ": " + why;
        }
      }
      done(std::move(a));
    });
    if (*id != 0) requests_.push_back(*id);
    return;
  }
  // The handle is kept until its answer came: dropping it would cancel the connect.
  tcp_.erase(std::remove_if(tcp_.begin(), tcp_.end(), [](const Tcp& t) { return *t.finished; }),
             tcp_.end());
  auto finished = std::make_shared<bool>(false);
  auto probe = TcpProbe::Start(
      loop_, endpoint_.host, endpoint_.port, timeout, [finished, timeout, done](TcpProbeResult r) {
        *finished = true;
        EndpointAnswer a;
        a.ok = r.ok();
        if (r.ok()) {
          a.what = "connected in " + std::to_string(r.elapsed_ms) + " ms";
        } else if (r.error_kind == "timeout") {
          a.timed_out = true;
          a.what = "no connection within " + std::to_string(timeout) + " ms";
        } else {
          a.what = r.error_kind + (r.error.empty() ? "" : " (" + r.error + ")");
        }
        done(std::move(a));
      });
  if (!*finished) tcp_.push_back({std::move(probe), finished});
}

}  // namespace guardian
