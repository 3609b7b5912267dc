#pragma once
// StoreThread: runs Store work on its own thread, in submission order, and delivers each
// result back on the loop thread. Order matters: a step's `running` row is written before the
// step acts, and its end after, so the journal never runs ahead of what happened.
//
// Thread: Submit and Close are called on the loop thread; `work` runs on the store thread;
// `done` runs on the loop thread. Close drains the queue (every submitted `done` is called),
// joins the thread and closes the uv_async handle, then calls `closed`.

#include <uv.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "daemon/status.h"
#include "daemon/store.h"

namespace guardian {

class StoreThread {
 public:
  using Work = std::function<Status(Store&)>;
  using Done = std::function<void(Status)>;

  StoreThread(uv_loop_t* loop, std::unique_ptr<Store> store);
  ~StoreThread();
  StoreThread(const StoreThread&) = delete;
  StoreThread& operator=(const StoreThread&) = delete;

  void Submit(Work work, Done done = nullptr);
  void Close(std::function<void()> closed);

  // Milliseconds the most recent job waited in the queue plus ran (for lag reporting).
  int64_t last_latency_ms() const { return last_latency_ms_; }
  // Called on the loop with each job's queued-plus-run time in microseconds (for metrics).
  void set_latency_observer(std::function<void(int64_t)> f) { latency_observer_ = std::move(f); }

 private:
  struct Job {
    Work work;
    Done done;
    Status result;
    int64_t queued_us = 0;  // steady clock
    int64_t finished_us = 0;
  };
  void Run();
  void DeliverDone();

  uv_loop_t* loop_;
  std::unique_ptr<Store> store_;
  uv_async_t async_{};
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> pending_;   // guarded by mu_
  std::deque<Job> finished_;  // guarded by mu_
  bool stopping_ = false;     // guarded by mu_
  bool joined_ = false;       // loop thread only
  bool closed_ = false;
  int64_t last_latency_ms_ = 0;
  std::function<void(int64_t)> latency_observer_;
  std::function<void()> on_closed_;
};

}  // namespace guardian
