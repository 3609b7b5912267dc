#include "daemon/store_thread.h"

#include <chrono>
#include <cstdlib>

#include "daemon/clock.h"

namespace guardian {

namespace {
int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

StoreThread::StoreThread(uv_loop_t* loop, std::unique_ptr<Store> store)
    : loop_(loop), store_(std::move(store)) {
  async_.data = this;
  if (uv_async_init(loop_, &async_, [](uv_async_t* a) {
        static_cast<StoreThread*>(a->data)->DeliverDone();
      }) != 0) {
    std::abort();
  }
  thread_ = std::thread([this] { Run(); });
}

StoreThread::~StoreThread() {
  // Close must have run to completion; destroying a live thread would lose journal writes.
  if (!closed_) std::abort();
}

void StoreThread::Submit(Work work, Done done) {
  if (joined_) {
    // Shutdown: the thread is gone but a completion still journals; write it here so nothing
    // is lost (the loop is only closing handles now).
    Status s = store_ ? work(*store_) : Status::Aborted("store closed");
    if (done) done(s);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back(Job{std::move(work), std::move(done), Status::OK(), NowUs(), 0});
  }
  cv_.notify_one();
}

void StoreThread::Run() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping and drained
      job = std::move(pending_.front());
      pending_.pop_front();
    }
    job.result = job.work(*store_);
    job.finished_us = NowUs();
    {
      std::lock_guard<std::mutex> lock(mu_);
      finished_.push_back(std::move(job));
    }
    uv_async_send(&async_);
  }
}

void StoreThread::DeliverDone() {
  std::deque<Job> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done.swap(finished_);
  }
  for (auto& job : done) {
    int64_t us = job.finished_us - job.queued_us;
    last_latency_ms_ = us / 1000;
    if (latency_observer_) latency_observer_(us);
    if (job.done) job.done(job.result);
  }
}

void StoreThread::Close(std::function<void()> closed) {
  on_closed_ = std::move(closed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  // Joining blocks the loop briefly, but only at shutdown and only for queued writes, which
  // must reach disk before we exit.
  thread_.join();
  joined_ = true;
  DeliverDone();
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), [](uv_handle_t* h) {
    auto* self = static_cast<StoreThread*>(h->data);
    self->closed_ = true;
    self->store_.reset();
    if (self->on_closed_) self->on_closed_();
  });
}

}  // namespace guardian
