#pragma once
// PsiTrigger: a kernel PSI trigger on a pressure file (/proc/pressure/memory or a cgroup's
// memory.pressure), owned by one object: "tell me when tasks stall more than N us in a W us
// window", delivered as POLLPRI on the file and handed to the loop with a uv_poll. Kernels or
// containers that refuse triggers answer Start with the reason; the caller then reads the
// averages on each probe instead. Destroying it closes the handle, then the file.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>

#include "daemon/status.h"

namespace guardian {

class PsiTrigger {
 public:
  explicit PsiTrigger(uv_loop_t* loop);
  ~PsiTrigger();
  PsiTrigger(const PsiTrigger&) = delete;
  PsiTrigger& operator=(const PsiTrigger&) = delete;

  // Arms "some STALL_US WINDOW_US" on `path`; `fired` runs on the loop at each event.
  Status Start(const std::string& path, int64_t stall_us, int64_t window_us,
               std::function<void()> fired);

 private:
  struct Handle {
    uv_poll_t poll;
    int fd = -1;
    std::function<void()> fired;
  };
  uv_loop_t* loop_;
  Handle* h_ = nullptr;
};

}  // namespace guardian
