#pragma once
// StoreThread: runs Store work on its own thread, in submission order, and delivers each
// result back on the loop thread. Order matters: a step's `running` row is written before the
// step acts, and its end after, so the journal never runs ahead of what happened.
//
// When the disk refuses a journal write (full, I/O error: Store::TakeWriteFault), the store is
// degraded: that write and every journal write after it wait in memory, in order, up to
// `max_pending`, and are retried every kRetryMs until they all land. Their `done` is told OK
// as soon as they are buffered, so Guardian keeps healing (disk_full must be able to heal the
// disk the store is on). Past the bound a journal write fails at once and is dropped. Queries
// (reads, and writes whose caller reports failure itself) never wait in memory; while degraded
// they see the store as it is on disk.
//
// Incident and step ids are given out here, on the loop thread, so a buffered row already has
// the id the engine uses.
//
// Thread: Submit, Query, Close and the id calls are made on the loop thread; `work` runs on the
// store thread; `done` runs on the loop thread; health() from any thread. Close drains the
// queue (every submitted `done` is called), tries once more to write what is buffered, joins
// the thread and closes the uv_async handle, then calls `closed`.

#include <uv.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "daemon/status.h"
#include "daemon/store.h"

namespace guardian {

// What status and metrics say of the store.
struct StoreHealth {
  bool degraded = false;       // journal writes are waiting in memory
  int64_t pending = 0;         // how many
  int64_t write_errors = 0;    // writes the disk refused, counting retries
  int64_t dropped = 0;         // journal writes lost: past the bound, or failed for good
  int64_t degraded_since = 0;  // wall ms; 0 when not degraded
  std::string last_error;      // the disk's last refusal
};

class StoreThread {
 public:
  using Work = std::function<Status(Store&)>;
  using Done = std::function<void(Status)>;

  static constexpr int64_t kDefaultMaxPending = 10000;
  static constexpr int64_t kRetryMs = 250;

  StoreThread(uv_loop_t* loop, std::unique_ptr<Store> store,
              int64_t max_pending = kDefaultMaxPending);
  ~StoreThread();
  StoreThread(const StoreThread&) = delete;
  StoreThread& operator=(const StoreThread&) = delete;

  // A journal write: buffered in memory while the disk refuses it (see above).
  void Submit(Work work, Done done = nullptr);
  // Anything else: runs in order, fails at once when the disk refuses it.
  void Query(Work work, Done done = nullptr);
  void Close(std::function<void()> closed);

  // Ids for new incidents and steps (InsertIncident/InsertStep keep a record's id).
  int64_t NewIncidentId() { return ++last_incident_id_; }
  int64_t NewStepId() { return ++last_step_id_; }

  StoreHealth health() const;

  // Milliseconds the most recent job waited in the queue plus ran (for lag reporting).
  int64_t last_latency_ms() const { return last_latency_ms_; }
  // Called on the loop with each job's queued-plus-run time in microseconds (for metrics).
  void set_latency_observer(std::function<void(int64_t)> f) { latency_observer_ = std::move(f); }

 private:
  struct Job {
    Work work;
    Done done;
    bool journal = false;
    Status result;
    int64_t queued_us = 0;  // steady clock
    int64_t finished_us = 0;
  };
  void Enqueue(Work work, Done done, bool journal);
  void Run();
  // Store thread: runs one job, or buffers it behind the writes already waiting.
  void RunJob(Job job);
  void Buffer(Job job);
  // Store thread: writes what waits, in order, until the disk refuses again.
  void Flush();
  void WriteRefused(const Status& s);
  void Finish(Job job);
  void DeliverDone();

  uv_loop_t* loop_;
  std::unique_ptr<Store> store_;
  const int64_t max_pending_;
  uv_async_t async_{};
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> pending_;    // guarded by mu_
  std::deque<Job> finished_;   // guarded by mu_
  bool stopping_ = false;      // guarded by mu_
  StoreHealth health_;         // guarded by mu_
  std::deque<Work> buffered_;  // store thread only: journal writes the disk refused
  int64_t retry_at_us_ = 0;    // store thread only
  int64_t last_incident_id_ = 0;
  int64_t last_step_id_ = 0;
  bool joined_ = false;  // loop thread only
  bool closed_ = false;
  int64_t last_latency_ms_ = 0;
  std::function<void(int64_t)> latency_observer_;
  std::function<void()> on_closed_;
};

}  // namespace guardian
