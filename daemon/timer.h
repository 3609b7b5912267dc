#pragma once
// Timer: one uv_timer_t owned by one object. Destroying the Timer stops and closes the handle;
// the handle's memory is freed in its close callback, so a Timer may be destroyed at any time
// on the loop thread, even from inside its own callback.

#include <uv.h>

#include <cstdint>
#include <functional>

namespace guardian {

class Timer {
 public:
  explicit Timer(uv_loop_t* loop);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Fires `cb` once after `ms` (0 = next loop iteration). Restarting replaces the callback.
  void Start(int64_t ms, std::function<void()> cb);
  // Fires `cb` every `ms`.
  void StartRepeat(int64_t ms, std::function<void()> cb);
  void Stop();
  bool active() const;
  // A timer that is only a background chore does not keep the loop alive.
  void Unref();

 private:
  void Arm(int64_t timeout, int64_t repeat, std::function<void()> cb);
  struct Handle {
    uv_timer_t timer;
    std::function<void()> cb;
  };
  Handle* h_;
};

}  // namespace guardian
