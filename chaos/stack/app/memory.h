#pragma once
// Memory the app really holds: cache blocks (shed on demand) and leak blocks (a fault-injection
// hook; only a restart or /control/release frees them). Every block is 1 MiB of mmap'ed memory
// with each page written, so RSS follows the numbers reported here.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace demoapp {

class Status;

class Memory {
 public:
  static constexpr uint64_t kBlock = 1 << 20;

  Memory(Status& status, uint64_t low_memory_cap_bytes);
  ~Memory();

  // Allocates `mb` blocks. Returns an empty string, or why it refused or stopped (a cache
  // request over the low-memory cap is refused whole; an mmap failure keeps what it got).
  std::string Allocate(int64_t mb, bool leak, bool* over_cap);
  // Frees every cache block; returns the bytes freed.
  uint64_t ShedCaches();
  // Frees every leak block; returns the bytes freed.
  uint64_t ReleaseLeaks();
  // On: sheds caches and caps them. Off: lifts the cap (nothing is re-warmed).
  void SetLowMemory(bool on);

  uint64_t cache_bytes() const;
  uint64_t leak_bytes() const;
  uint64_t cap_bytes() const { return cap_; }

 private:
  void Report();  // with mu_ held

  Status& status_;
  const uint64_t cap_;
  mutable std::mutex mu_;
  std::vector<void*> cache_;
  std::vector<void*> leak_;
  bool low_memory_ = false;
  // Bumped by each shed (under mu_): a cache allocation in flight stops and drops its blocks.
  std::atomic<uint64_t> shed_generation_{0};
  int cache_fills_ = 0;  // cache allocations in flight (under mu_)
  std::condition_variable fills_done_;
};

// VmRSS of this process in bytes, from /proc/self/status (0 when unreadable).
uint64_t RssBytes();

}  // namespace demoapp
