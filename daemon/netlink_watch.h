#pragma once
// NetlinkWatch: "a network link, address or route changed", from the kernel's rtnetlink
// multicast groups (links, IPv4/IPv6 addresses and routes) on a uv_poll, so network_unreachable
// probes the moment a link goes down instead of at its next interval. Only a wake-up: what
// changed is judged by the probe. Destroying it closes the handle, then the socket.
#include <uv.h>

#include <functional>

#include "daemon/status.h"

namespace guardian {

class NetlinkWatch {
 public:
  explicit NetlinkWatch(uv_loop_t* loop);
  ~NetlinkWatch();
  NetlinkWatch(const NetlinkWatch&) = delete;
  NetlinkWatch& operator=(const NetlinkWatch&) = delete;

  // `changed` runs on the loop after each batch of rtnetlink messages.
  Status Start(std::function<void()> changed);

 private:
  struct Handle {
    uv_poll_t poll;
    int fd = -1;
    std::function<void()> changed;
  };
  uv_loop_t* loop_;
  Handle* h_ = nullptr;
};

}  // namespace guardian
