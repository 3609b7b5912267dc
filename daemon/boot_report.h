#pragma once
// BootReport: a service's boot as its status file reports it (the demo app's `boot` object:
// named chunks with start and end times, critical or not), judged against deadlines. For the
// slow_boot detector; plain logic over JSON and a clock value so tests need no service.

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "daemon/observation.h"

namespace guardian {

struct BootLimits {
  int64_t deadline_ms = 2000;        // boot start -> ready
  int64_t chunk_deadline_ms = 1000;  // any one chunk
};

struct BootVerdict {
  Observation observation;
  // Wall ms of the next deadline still ahead while booting (when to look again); 0 when none.
  int64_t next_deadline_ms = 0;
  bool booting = false;
  bool degraded = false;  // ready, with chunks skipped
  std::string skipped;    // "search_index, plugins" when degraded
};

// `status` is the service's status document; `pid` the service's current process (a report by
// another process is not about this boot); `now_ms` wall-clock ms.
BootVerdict JudgeBoot(const nlohmann::json& status, pid_t pid, int64_t now_ms,
                      const BootLimits& limits);

// "listen 0 ms, database 21 ms, search_index 1012+ ms (running, non-critical)".
std::string ChunkTimings(const nlohmann::json& chunks, int64_t now_ms);

}  // namespace guardian
