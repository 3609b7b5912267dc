#include "daemon/probe_schedule.h"

#include <algorithm>

namespace guardian {

int64_t ProbeSlackMs(int64_t interval_ms) {
  int64_t slack = std::min<int64_t>(interval_ms / 50, 20);
  return slack > 1 ? slack : 0;
}

int64_t NextProbeDelayMs(int64_t now_ms, int64_t interval_ms, double jitter, double u) {
  int64_t delay = interval_ms;
  if (jitter > 0) delay += static_cast<int64_t>(static_cast<double>(interval_ms) * jitter * u);
  int64_t slack = ProbeSlackMs(interval_ms);
  if (slack == 0 || delay <= slack) return delay;
  int64_t due = now_ms + delay;
  return due - due % slack - now_ms;
}

}  // namespace guardian
