#include "daemon/timer.h"

#include <cstdlib>

namespace guardian {

Timer::Timer(uv_loop_t* loop) : h_(new Handle) {
  if (uv_timer_init(loop, &h_->timer) != 0) std::abort();
  h_->timer.data = h_;
}

Timer::~Timer() {
  uv_timer_stop(&h_->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&h_->timer),
           [](uv_handle_t* h) { delete static_cast<Handle*>(h->data); });
}

void Timer::Start(int64_t ms, std::function<void()> cb) { Arm(ms < 0 ? 0 : ms, 0, std::move(cb)); }

void Timer::StartRepeat(int64_t ms, std::function<void()> cb) {
  int64_t period = ms < 1 ? 1 : ms;
  Arm(period, period, std::move(cb));
}

void Timer::Arm(int64_t timeout, int64_t repeat, std::function<void()> cb) {
  h_->cb = std::move(cb);
  uv_timer_start(
      &h_->timer,
      [](uv_timer_t* t) {
        // Copy first: the callback may restart this timer (replacing cb) or destroy its owner.
        auto fn = static_cast<Handle*>(t->data)->cb;
        fn();
      },
      static_cast<uint64_t>(timeout), static_cast<uint64_t>(repeat));
}

void Timer::Stop() { uv_timer_stop(&h_->timer); }

bool Timer::active() const {
  return uv_is_active(reinterpret_cast<const uv_handle_t*>(&h_->timer));
}

void Timer::Unref() { uv_unref(reinterpret_cast<uv_handle_t*>(&h_->timer)); }

}  // namespace guardian
