#include "daemon/loop_handles.h"

namespace guardian {

SocketWatch* SocketWatch::Open(uv_loop_t* loop, int fd) {
  auto* w = new SocketWatch;
  w->fd_ = fd;
  w->poll_.data = w;
  if (uv_poll_init_socket(loop, &w->poll_, fd) != 0) {
    delete w;
    return nullptr;
  }
  return w;
}

void SocketWatch::Start(int events, std::function<void(int, int)> ready) {
  if (closing_) return;
  ready_ = std::move(ready);
  uv_poll_start(&poll_, events, [](uv_poll_t* h, int status, int ev) {
    auto* w = static_cast<SocketWatch*>(h->data);
    if (!w->closing_ && w->ready_) w->ready_(status, ev);
  });
}

void SocketWatch::Close(std::shared_ptr<CloseLatch> latch) {
  if (closing_) return;
  closing_ = true;
  latch_ = std::move(latch);
  if (latch_) ++latch_->pending;
  uv_poll_stop(&poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), [](uv_handle_t* h) {
    auto* w = static_cast<SocketWatch*>(h->data);
    auto l = std::move(w->latch_);
    delete w;
    if (l) l->Done();
  });
}

bool PollOnceBeforeDeadline(uv_timer_t* timer, uv_timer_cb cb, bool* polled) {
  if (*polled) return false;
  *polled = true;
  uv_timer_start(timer, cb, 1, 0);
  return true;
}

WakeTimer* WakeTimer::Open(uv_loop_t* loop) {
  auto* t = new WakeTimer;
  t->timer_.data = t;
  uv_timer_init(loop, &t->timer_);
  return t;
}

void WakeTimer::Start(uint64_t ms, std::function<void()> fire) {
  if (closing_) return;
  fire_ = std::move(fire);
  polled_ = false;
  uv_timer_start(&timer_, &WakeTimer::OnTimer, ms, 0);
}

void WakeTimer::OnTimer(uv_timer_t* h) {
  auto* t = static_cast<WakeTimer*>(h->data);
  if (t->closing_ || !t->fire_) return;
  // The library's wake-up is mostly a deadline (c-ares, curl).
  if (PollOnceBeforeDeadline(h, &WakeTimer::OnTimer, &t->polled_)) return;
  t->fire_();
}

void WakeTimer::Stop() { uv_timer_stop(&timer_); }

void WakeTimer::Close(std::shared_ptr<CloseLatch> latch) {
  if (closing_) return;
  closing_ = true;
  latch_ = std::move(latch);
  if (latch_) ++latch_->pending;
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) {
    auto* t = static_cast<WakeTimer*>(h->data);
    auto l = std::move(t->latch_);
    delete t;
    if (l) l->Done();
  });
}

}  // namespace guardian
