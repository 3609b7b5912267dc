#include "daemon/netlink_watch.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace guardian {

NetlinkWatch::NetlinkWatch(uv_loop_t* loop) : loop_(loop) {}

NetlinkWatch::~NetlinkWatch() {
  if (!h_) return;
  uv_poll_stop(&h_->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&h_->poll), [](uv_handle_t* h) {
    auto* handle = static_cast<Handle*>(h->data);
    ::close(handle->fd);
    delete handle;
  });
}

Status NetlinkWatch::Start(std::function<void()> changed) {
  if (h_) return Status::InvalidArgument("netlink watch already started");
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return Status::IOError(std::string("netlink socket: ") + std::strerror(errno));
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups =
      RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    return Status::IOError(std::string("netlink bind: ") + std::strerror(err));
  }
  auto* h = new Handle;
  h->fd = fd;
  h->changed = std::move(changed);
  h->poll.data = h;
  int rc = uv_poll_init(loop_, &h->poll, fd);
  if (rc != 0) {
    ::close(fd);
    delete h;
    return Status::IOError(std::string("netlink poll: ") + uv_strerror(rc));
  }
  h_ = h;
  rc = uv_poll_start(&h->poll, UV_READABLE, [](uv_poll_t* p, int status, int) {
    auto* handle = static_cast<Handle*>(p->data);
    if (status != 0) return;
    // Drain the batch (the content does not matter: the probe judges); an overrun (ENOBUFS)
    // is a change too.
    char buf[8192];
    while (::recv(handle->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0 || errno == ENOBUFS) {
    }
    if (handle->changed) handle->changed();
  });
  if (rc != 0) return Status::IOError(std::string("netlink poll: ") + uv_strerror(rc));
  return Status::OK();
}

}  // namespace guardian
