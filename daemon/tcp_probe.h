#pragma once
// TcpProbe: "can a TCP connection to ADDRESS:PORT be made now?", answered on the loop with
// uv_tcp_connect and a deadline, and why not: refused (an RST: the host is up, nothing listens),
// unreachable (no route, the network or host is down), or timeout (nothing came back). The
// kinds are what network_unreachable tells "network down" from "one service down" by.
//
// The address is numeric (resolve names with DnsResolver first). Each probe owns its handles,
// closed through one path; Cancel() ends it without a callback.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace guardian {

struct TcpProbeResult {
  std::string error_kind;  // "", "refused", "unreachable", "timeout" or "error"
  std::string error;
  int64_t elapsed_ms = 0;
  bool ok() const { return error_kind.empty(); }
};

// Starts a probe; `done` runs once on the loop thread unless the returned handle's Cancel() is
// called first. A bad address answers at once with "error".
class TcpProbe {
 public:
  static std::shared_ptr<TcpProbe> Start(uv_loop_t* loop, const std::string& address, int port,
                                         int64_t timeout_ms,
                                         std::function<void(TcpProbeResult)> done);
  void Cancel();
  ~TcpProbe();

 private:
  struct Handles;
  Handles* h_ = nullptr;  // freed when both handles have closed
};

// The kind for a libuv connect error (UV_ECONNREFUSED -> "refused", ...).
std::string TcpErrorKind(int uv_status);

}  // namespace guardian
