#include "daemon/store_thread.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <optional>

#include "daemon/clock.h"

namespace guardian {

namespace {
int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

StoreThread::StoreThread(uv_loop_t* loop, std::unique_ptr<Store> store, int64_t max_pending)
    : loop_(loop), store_(std::move(store)), max_pending_(max_pending) {
  Status ids = store_->LastIds(&last_incident_id_, &last_step_id_);
  if (!ids.ok()) {
    // The store was just opened and migrated, so this is a bug or a broken disk; refuse rather
    // than hand out ids that collide with rows already written.
    spdlog::critical("store: {}", ids.ToString());
    std::abort();
  }
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

void StoreThread::Submit(Work work, Done done) { Enqueue(std::move(work), std::move(done), true); }

void StoreThread::Query(Work work, Done done) { Enqueue(std::move(work), std::move(done), false); }

void StoreThread::Enqueue(Work work, Done done, bool journal) {
  if (joined_) {
    // Shutdown: the thread is gone but a completion still journals; write it here so nothing
    // is lost (the loop is only closing handles now).
    Status s = store_ ? work(*store_) : Status::Aborted("store closed");
    if (done) done(s);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back(Job{std::move(work), std::move(done), journal, Status::OK(), NowUs(), 0});
  }
  cv_.notify_one();
}

StoreHealth StoreThread::health() const {
  std::lock_guard<std::mutex> lock(mu_);
  return health_;
}

void StoreThread::Run() {
  for (;;) {
    std::optional<Job> job;
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto ready = [this] { return stopping_ || !pending_.empty(); };
      if (buffered_.empty()) {
        cv_.wait(lock, ready);
      } else {
        auto at = std::chrono::steady_clock::time_point(std::chrono::microseconds(retry_at_us_));
        cv_.wait_until(lock, at, ready);
      }
      if (!pending_.empty()) {
        job = std::move(pending_.front());
        pending_.pop_front();
      }
      stopping = stopping_;
    }
    if (job) RunJob(std::move(*job));
    if (!buffered_.empty() && (NowUs() >= retry_at_us_ || (stopping && !job))) Flush();
    if (stopping && !job) {
      if (!buffered_.empty()) {
        spdlog::error(
            "store: stopping with {} journal writes the disk still refuses; they are lost",
            buffered_.size());
      }
      return;
    }
  }
}

void StoreThread::RunJob(Job job) {
  if (job.journal && !buffered_.empty()) return Buffer(std::move(job));  // keep the order
  store_->TakeWriteFault();
  job.result = job.work(*store_);
  if (!job.result.ok() && store_->TakeWriteFault()) {
    store_->RollbackIfOpen();
    WriteRefused(job.result);
    if (job.journal) return Buffer(std::move(job));
  }
  Finish(std::move(job));
}

void StoreThread::Buffer(Job job) {
  bool first = buffered_.empty();
  std::string last_error;
  if (static_cast<int64_t>(buffered_.size()) >= max_pending_) {
    std::lock_guard<std::mutex> lock(mu_);
    ++health_.dropped;
    job.result = Status::IOError("the store cannot write (" + health_.last_error + ") and " +
                                 std::to_string(max_pending_) +
                                 " writes already wait in memory; this one is dropped");
  } else {
    buffered_.push_back(std::move(job.work));
    job.result = Status::OK();  // buffered: the caller goes on
    if (first) retry_at_us_ = NowUs() + kRetryMs * 1000;
    std::lock_guard<std::mutex> lock(mu_);
    if (first) {
      health_.degraded = true;
      health_.degraded_since = SystemClock::Get()->WallMs();
      last_error = health_.last_error;
    }
    health_.pending = static_cast<int64_t>(buffered_.size());
  }
  // Logged outside mu_: the loop reads health() under it and must not wait on the log.
  if (first && job.result.ok()) {
    spdlog::warn(
        "store degraded: the disk refuses writes ({}); journal writes wait in memory "
        "(up to {}) and are retried every {} ms",
        last_error, max_pending_, kRetryMs);
  }
  Finish(std::move(job));
}

void StoreThread::Flush() {
  size_t written = 0;
  while (!buffered_.empty()) {
    store_->TakeWriteFault();
    Status s = buffered_.front()(*store_);
    if (!s.ok() && store_->TakeWriteFault()) {
      store_->RollbackIfOpen();
      WriteRefused(s);
      retry_at_us_ = NowUs() + kRetryMs * 1000;
      std::lock_guard<std::mutex> lock(mu_);
      health_.pending = static_cast<int64_t>(buffered_.size());
      return;
    }
    if (!s.ok()) {
      // Not the disk: retrying would fail the same way.
      spdlog::error("store: a buffered journal write failed and is dropped: {}", s.ToString());
      std::lock_guard<std::mutex> lock(mu_);
      ++health_.dropped;
    }
    buffered_.pop_front();
    ++written;
  }
  int64_t since;
  {
    std::lock_guard<std::mutex> lock(mu_);
    since = health_.degraded_since;
    health_.degraded = false;
    health_.pending = 0;
    health_.degraded_since = 0;
  }
  spdlog::info("store recovered: {} buffered journal writes written after {} ms", written,
               SystemClock::Get()->WallMs() - since);
}

void StoreThread::WriteRefused(const Status& s) {
  std::lock_guard<std::mutex> lock(mu_);
  ++health_.write_errors;
  health_.last_error = s.message();
}

void StoreThread::Finish(Job job) {
  job.finished_us = NowUs();
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished_.push_back(std::move(job));
  }
  uv_async_send(&async_);
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
