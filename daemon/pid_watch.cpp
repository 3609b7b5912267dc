#include "daemon/pid_watch.h"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace guardian {

PidWatch::PidWatch(uv_loop_t* loop) : loop_(loop) {}

PidWatch::~PidWatch() { Close(); }

void PidWatch::Close() {
  if (!h_) return;
  Handle* h = h_;
  h_ = nullptr;
  h->exited = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&h->poll), [](uv_handle_t* p) {
    auto* h = static_cast<Handle*>(p->data);
    ::close(h->fd);
    delete h;
  });
}

bool PidWatch::ExitedNow() const {
  if (!h_) return false;
  struct pollfd p = {h_->fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

Status OpenPidfd(pid_t pid, ProcessIdentity* id, int* fd) {
  *fd = -1;
  if (pid <= 0) return Status::NotFound("no pid");
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    if (errno == ESRCH) return Status::NotFound("pid " + std::to_string(pid) + " is gone");
    return Status::IOError("pidfd_open " + std::to_string(pid) + ": " + std::strerror(errno));
  }
  Status s = ReadProcessIdentity(pid, id);
  if (!s.ok()) {
    ::close(pidfd);
    return s;
  }
  *fd = pidfd;
  return Status::OK();
}

Status PidWatch::Start(int fd, std::function<void()> exited) {
  Close();
  if (fd < 0) return Status::InvalidArgument("no pidfd");
  auto* h = new Handle;
  h->fd = fd;
  h->exited = std::move(exited);
  h->poll.data = h;
  if (int rc = uv_poll_init(loop_, &h->poll, fd); rc != 0) {
    ::close(fd);
    delete h;
    return Status::IOError(std::string("uv_poll_init: ") + uv_strerror(rc));
  }
  h_ = h;
  uv_poll_start(&h->poll, UV_READABLE, [](uv_poll_t* p, int, int) {
    auto* h = static_cast<Handle*>(p->data);
    uv_poll_stop(p);
    auto exited = std::move(h->exited);
    h->exited = nullptr;
    if (exited) exited();  // may destroy the PidWatch, which closes the handle
  });
  return Status::OK();
}

}  // namespace guardian
