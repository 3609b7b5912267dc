#pragma once
// DnsResolver: name lookups through c-ares, driven by the libuv loop (c-ares says which sockets
// to watch: one uv_poll each; one uv_timer for its retries), for probes that must tell "DNS is
// down" from "the host is down" without ever blocking the loop. Only DNS is asked, never
// /etc/hosts, so a probe measures the resolver it names. Every callback runs on the loop thread.
//
// One object owns the channel, its polls and its timer; Close() ends every lookup in flight
// (their callbacks are not called) and calls `closed` once every handle is closed.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "daemon/status.h"

namespace guardian {

struct DnsAnswer {
  // "" when the name resolved; else "nxdomain" (the server says there is no such name),
  // "timeout" (no server answered), "refused" (the server refused or is not there) or "error".
  std::string error_kind;
  std::string error;
  std::vector<std::string> addresses;  // "10.0.0.1", "fd00::1"
  int64_t elapsed_ms = 0;
  bool ok() const { return error_kind.empty(); }
};

struct DnsOptions {
  std::vector<std::string> servers;  // "127.0.0.1:5353", "[fd00::1]:53"; empty: resolv.conf's
  int64_t timeout_ms = 1000;         // per try
  int tries = 2;
};

class DnsResolver {
 public:
  explicit DnsResolver(uv_loop_t* loop);
  ~DnsResolver();  // Close() first; destroying an open resolver is a bug (it aborts)
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  Status Init(const DnsOptions& options);
  // Looks `name` up (A and AAAA); `done` runs once on the loop thread, unless closed first.
  void Resolve(const std::string& name, std::function<void(DnsAnswer)> done);
  void Close(std::function<void()> closed);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace guardian
