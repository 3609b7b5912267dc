#include "daemon/psi_trigger.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace guardian {

PsiTrigger::PsiTrigger(uv_loop_t* loop) : loop_(loop) {}

PsiTrigger::~PsiTrigger() {
  if (!h_) return;
  uv_poll_stop(&h_->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&h_->poll), [](uv_handle_t* h) {
    auto* handle = static_cast<Handle*>(h->data);
    ::close(handle->fd);  // the trigger goes with the file
    delete handle;
  });
}

Status PsiTrigger::Start(const std::string& path, int64_t stall_us, int64_t window_us,
                         std::function<void()> fired) {
  if (h_) return Status::InvalidArgument("PSI trigger already started");
  int fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return Status::IOError(path + ": " + std::strerror(errno));
  std::string spec = "some " + std::to_string(stall_us) + " " + std::to_string(window_us);
  if (::write(fd, spec.c_str(), spec.size() + 1) < 0) {
    int err = errno;
    ::close(fd);
    return Status::IOError(path + ": the kernel refused trigger '" + spec +
                           "': " + std::strerror(err));
  }
  auto* h = new Handle;
  h->fd = fd;
  h->fired = std::move(fired);
  h->poll.data = h;
  int rc = uv_poll_init(loop_, &h->poll, fd);
  if (rc != 0) {
    ::close(fd);
    delete h;
    return Status::IOError(path + ": " + uv_strerror(rc));
  }
  h_ = h;
  rc = uv_poll_start(&h->poll, UV_PRIORITIZED, [](uv_poll_t* p, int status, int) {
    auto* handle = static_cast<Handle*>(p->data);
    if (status == 0 && handle->fired) handle->fired();
  });
  if (rc != 0) return Status::IOError(path + ": " + uv_strerror(rc));
  return Status::OK();
}

}  // namespace guardian
