#include "daemon/work.h"

#include <cstdlib>

namespace guardian {
namespace {
struct WorkReq {
  uv_work_t req;
  std::function<void()> work;
  std::function<void()> after;
};
}  // namespace

void QueueWork(uv_loop_t* loop, std::function<void()> work, std::function<void()> after) {
  auto* w = new WorkReq{{}, std::move(work), std::move(after)};
  w->req.data = w;
  int rc = uv_queue_work(
      loop, &w->req, [](uv_work_t* req) { static_cast<WorkReq*>(req->data)->work(); },
      [](uv_work_t* req, int) {
        auto* w = static_cast<WorkReq*>(req->data);
        if (w->after) w->after();
        delete w;
      });
  // uv_queue_work fails only for a null callback; that is a programming error.
  if (rc != 0) std::abort();
}

}  // namespace guardian
