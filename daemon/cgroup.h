#pragma once
// Memory cgroups for supervised services: a folder of cgroupfs (v1's memory hierarchy or v2)
// that a service is moved into as it starts, so that the kernel limits it and counts its OOM
// kills (ReadOomKills in memory_probe.h). Blocking writes to cgroupfs: call on the pool.

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "daemon/status.h"

namespace guardian {

// Creates `dir` when missing and, when `limit_mb` > 0, sets its memory limit (memory.max on
// v2, memory.limit_in_bytes on v1). InvalidArgument when `dir` is not in a memory hierarchy.
Status PrepareMemoryCgroup(const std::string& dir, int64_t limit_mb);

// Moves process `pid` (and the threads it has) into the cgroup `dir`.
Status JoinCgroup(const std::string& dir, pid_t pid);

}  // namespace guardian
