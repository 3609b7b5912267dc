#pragma once
// Memory figures for out_of_memory: the system's (MemAvailable, PSI memory pressure) and one
// service's (RSS of its processes, OOM kills in its memory cgroup), judged against limits.
// Plain reads of /proc and cgroupfs for the thread pool, and a pure judge tests can call.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "daemon/status.h"

namespace guardian {

struct MemInfo {
  uint64_t total_bytes = 0;
  uint64_t available_bytes = 0;  // MemAvailable: what can be had without swapping
};
// Parses the text of /proc/meminfo.
Status ParseMemInfo(const std::string& text, MemInfo* out);
Status ReadMemInfo(MemInfo* out);

// One line of /proc/pressure/memory: the share of time tasks stalled on memory.
struct Psi {
  double some_avg10 = 0;  // percent, over 10 s: some task stalled
  double full_avg10 = 0;  // percent, over 10 s: all non-idle tasks stalled
  uint64_t some_total_us = 0;
};
Status ParsePsi(const std::string& text, Psi* out);
Status ReadPsi(const std::string& path, Psi* out);

// VmRSS of `pid` plus that of every descendant (a service's workers count against it). NotFound
// when `pid` is gone. Walks /proc: call on the pool.
Status ReadTreeRss(pid_t pid, uint64_t* bytes);
// VmRSS from the text of /proc/PID/status; 0 when absent (a zombie, a kernel thread).
uint64_t ParseVmRss(const std::string& status_text);

// The kernel's count of OOM kills in a memory cgroup: "oom_kill N" in memory.events (cgroup v2)
// or memory.oom_control (v1). NotFound when the folder is not a memory cgroup.
Status ReadOomKills(const std::string& cgroup_dir, uint64_t* kills);

// What is judged; a zero limit is off.
struct MemoryLimits {
  uint64_t rss_limit_bytes = 0;
  uint64_t min_available_bytes = 0;
  double min_available_percent = 0;
  double psi_some_avg10 = 0;  // percent
};

struct MemorySample {
  bool have_rss = false;
  uint64_t rss_bytes = 0;
  bool have_meminfo = false;
  MemInfo mem;
  bool have_psi = false;
  Psi psi;
  bool psi_triggered = false;  // the kernel's PSI trigger fired since the last sample
  uint64_t new_oom_kills = 0;  // OOM kills in the service's cgroup not yet handled
};

struct MemoryVerdict {
  bool service_over = false;         // the service itself is over its RSS limit, or was OOM-killed
  bool system_short = false;         // the system is short of memory or stalls on it
  std::vector<std::string> reasons;  // what is wrong, one phrase each
  std::string figures;               // "RSS 312 MiB of 256; MemAvailable 2.1 GiB (9%); PSI 0.4%"
  bool failing() const { return service_over || system_short; }
};

MemoryVerdict JudgeMemory(const MemorySample& sample, const MemoryLimits& limits);

}  // namespace guardian
