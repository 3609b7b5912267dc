#include "daemon/tcp_probe.h"

#include <netinet/in.h>

#include "daemon/loop_handles.h"

namespace guardian {

std::string TcpErrorKind(int status) {
  switch (status) {
    case 0:
      return "";
    case UV_ECONNREFUSED:
    case UV_ECONNRESET:
      return "refused";
    case UV_ENETUNREACH:
    case UV_EHOSTUNREACH:
    case UV_ENETDOWN:
    case UV_EHOSTDOWN:
      return "unreachable";
    case UV_ETIMEDOUT:
    case UV_ECANCELED:
      return "timeout";
    default:
      return "error";
  }
}

// The socket, its connect request and the deadline timer, freed once both handles are closed.
struct TcpProbe::Handles {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_timer_t timer;
  std::function<void(TcpProbeResult)> done;
  uint64_t started = 0;
  int open = 2;
  bool finished = false;
  bool polled_after_deadline = false;
  TcpProbe* owner = nullptr;  // told when these are freed; cleared when it goes first

  void Finish(int status, const char* why) {
    if (finished) return;
    finished = true;
    TcpProbeResult r;
    r.elapsed_ms = static_cast<int64_t>((uv_hrtime() - started) / 1'000'000);
    r.error_kind = why ? "timeout" : TcpErrorKind(status);
    if (!r.error_kind.empty()) r.error = why ? why : uv_strerror(status);
    auto cb = std::move(done);
    CloseAll();
    if (cb) cb(std::move(r));
  }

  static void OnDeadline(uv_timer_t* t) {
    auto* self = static_cast<Handles*>(t->data);
    if (PollOnceBeforeDeadline(t, &Handles::OnDeadline, &self->polled_after_deadline)) return;
    self->Finish(UV_ETIMEDOUT, "no answer before the deadline");
  }

  // Closing the socket also ends a pending connect (its callback gets UV_ECANCELED, ignored).
  void CloseAll() {
    uv_timer_stop(&timer);
    auto closed = [](uv_handle_t* h) {
      auto* self = static_cast<Handles*>(h->data);
      if (--self->open > 0) return;
      if (self->owner) self->owner->h_ = nullptr;
      delete self;
    };
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp)))
      uv_close(reinterpret_cast<uv_handle_t*>(&tcp), closed);
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&timer)))
      uv_close(reinterpret_cast<uv_handle_t*>(&timer), closed);
  }
};

std::shared_ptr<TcpProbe> TcpProbe::Start(uv_loop_t* loop, const std::string& address, int port,
                                          int64_t timeout_ms,
                                          std::function<void(TcpProbeResult)> done) {
  sockaddr_storage addr{};
  bool v6 = address.find(':') != std::string::npos;
  int rc = v6 ? uv_ip6_addr(address.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr))
              : uv_ip4_addr(address.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr));
  auto probe = std::shared_ptr<TcpProbe>(new TcpProbe);
  if (rc != 0 || port <= 0 || port > 65535) {
    TcpProbeResult r;
    r.error_kind = "error";
    r.error = "not a numeric address and port: " + address + ":" + std::to_string(port);
    done(std::move(r));
    return probe;
  }
  auto* h = new Handles;
  h->done = std::move(done);
  h->started = uv_hrtime();
  h->tcp.data = h;
  h->timer.data = h;
  h->connect.data = h;
  uv_tcp_init(loop, &h->tcp);
  uv_timer_init(loop, &h->timer);
  probe->h_ = h;
  h->owner = probe.get();
  rc = uv_tcp_connect(&h->connect, &h->tcp, reinterpret_cast<sockaddr*>(&addr),
                      [](uv_connect_t* req, int status) {
                        auto* self = static_cast<Handles*>(req->data);
                        if (status != UV_ECANCELED) self->Finish(status, nullptr);
                      });
  if (rc != 0) {  // refused before any packet (no route, bad family): a real answer too
    h->Finish(rc, nullptr);
    return probe;
  }
  // The deadline counts from now, not from the loop's cached time, which is stale when the
  // caller ran long before starting the probe.
  uv_update_time(loop);
  uv_timer_start(&h->timer, &Handles::OnDeadline, static_cast<uint64_t>(timeout_ms), 0);
  return probe;
}

void TcpProbe::Cancel() {
  if (!h_ || h_->finished) return;
  h_->finished = true;
  h_->done = nullptr;
  h_->CloseAll();
}

TcpProbe::~TcpProbe() {
  Cancel();
  if (h_) h_->owner = nullptr;
}

}  // namespace guardian
