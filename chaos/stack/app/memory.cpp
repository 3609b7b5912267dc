// Cache and leak blocks backed by mmap, so that allocating and shedding move RSS for real.

#include "chaos/stack/app/memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "chaos/stack/app/status.h"
#include "chaos/stack/app/util.h"

namespace demoapp {

namespace {

void* NewBlock() {
  void* p =
      mmap(nullptr, Memory::kBlock, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  // Anonymous pages cost nothing until written: touch each one so RSS really grows.
  auto* bytes = static_cast<volatile char*>(p);
  for (uint64_t off = 0; off < Memory::kBlock; off += 4096) bytes[off] = 1;
  return p;
}

uint64_t FreeAll(std::vector<void*>* blocks) {
  uint64_t freed = blocks->size() * Memory::kBlock;
  for (void* p : *blocks) munmap(p, Memory::kBlock);
  blocks->clear();
  return freed;
}

}  // namespace

Memory::Memory(Status& status, uint64_t low_memory_cap_bytes)
    : status_(status), cap_(low_memory_cap_bytes) {}

Memory::~Memory() {
  FreeAll(&cache_);
  FreeAll(&leak_);
}

std::string Memory::Allocate(int64_t mb, bool leak, bool* over_cap) {
  *over_cap = false;
  auto refused = [&] {
    *over_cap = true;
    return "low-memory mode: cache capped at " + std::to_string(cap_ >> 20) + " MiB";
  };
  uint64_t shed_generation = 0;
  {
    std::lock_guard lock(mu_);
    if (!leak && low_memory_ && (cache_.size() + static_cast<uint64_t>(mb)) * kBlock > cap_)
      return refused();
    shed_generation = shed_generation_.load();
    if (!leak) ++cache_fills_;
  }
  // Touching gigabytes takes a while: do it without the lock, then add the blocks.
  std::vector<void*> got;
  std::string error;
  for (int64_t i = 0; i < mb; ++i) {
    void* p = NewBlock();
    if (!p) {
      error = "mmap failed after " + std::to_string(i) + " MiB: " + ErrnoName(errno);
      break;
    }
    got.push_back(p);
    if (!leak && shed_generation_.load() != shed_generation) break;  // shed: stop filling now
    if (got.size() % 16 == 0) {
      // Report as it grows, as a service exporting its memory would: a watcher sees the
      // growth while it happens, not only once the request is done.
      std::lock_guard lock(mu_);
      if (!leak && shed_generation_.load() != shed_generation) break;
      uint64_t extra = got.size() * kBlock;
      status_.SetMemory(cache_.size() * kBlock + (leak ? 0 : extra),
                        leak_.size() * kBlock + (leak ? extra : 0), low_memory_);
    }
  }
  std::unique_lock lock(mu_);
  if (!leak) {
    --cache_fills_;
    fills_done_.notify_all();  // a shed waiting for this fill to drop its blocks
  }
  if (!leak && low_memory_ && (cache_.size() + got.size()) * kBlock > cap_) {
    FreeAll(&got);  // low-memory mode began while we were allocating
    return refused();
  }
  if (!leak && shed_generation != shed_generation_.load()) {
    // Caches were shed while these blocks were filled: they are dropped too, as asked.
    FreeAll(&got);
    Report();
    return "caches shed while allocating: dropped what was allocated";
  }
  std::vector<void*>& list = leak ? leak_ : cache_;
  list.insert(list.end(), got.begin(), got.end());
  Report();
  return error;
}

uint64_t Memory::ShedCaches() {
  std::unique_lock lock(mu_);
  ++shed_generation_;
  uint64_t freed = FreeAll(&cache_);
  // Fills in flight stop at their next block and drop what they took: wait for that, so the
  // report below (and whoever reads it) sees no cache left.
  fills_done_.wait(lock, [this] { return cache_fills_ == 0; });
  Report();
  return freed;
}

uint64_t Memory::ReleaseLeaks() {
  std::lock_guard lock(mu_);
  uint64_t freed = FreeAll(&leak_);
  Report();
  return freed;
}

void Memory::SetLowMemory(bool on) {
  std::unique_lock lock(mu_);
  low_memory_ = on;
  if (on) {
    ++shed_generation_;
    FreeAll(&cache_);
  }
  fills_done_.wait(lock, [this] { return cache_fills_ == 0; });
  Report();
}

uint64_t Memory::cache_bytes() const {
  std::lock_guard lock(mu_);
  return cache_.size() * kBlock;
}

uint64_t Memory::leak_bytes() const {
  std::lock_guard lock(mu_);
  return leak_.size() * kBlock;
}

void Memory::Report() {
  status_.SetMemory(cache_.size() * kBlock, leak_.size() * kBlock, low_memory_);
}

uint64_t RssBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // "N kB"
  }
  return 0;
}

}  // namespace demoapp
