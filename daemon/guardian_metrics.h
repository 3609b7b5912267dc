#pragma once
// GuardianMetrics: the metrics guardiand exports on /metrics (names in docs/api.md). Events
// (an incident opened, a phase finished, a store job done) are counted as they happen; state
// (checks, holds, budgets, loop lag) is copied from the daemon's status just before each render,
// so a removed check's series disappear instead of going stale.
//
// Thread: loop thread only.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "daemon/metrics.h"

namespace guardian {

class GuardianMetrics {
 public:
  GuardianMetrics();

  void IncidentOpened(const std::string& mode);
  void IncidentResolved(const std::string& mode, int64_t mttd_ms, int64_t mttr_ms,
                        int64_t target_ms);
  void IncidentEscalated(const std::string& mode);
  void PhaseFinished(const std::string& mode, const std::string& phase, const std::string& status,
                     int64_t duration_ms);
  void StoreJob(int64_t latency_us);
  void Reload(bool ok);
  void ApiRequest();

  // Renders, after refreshing gauges from `status` (the daemon's status JSON).
  std::string Render(const nlohmann::json& status);

 private:
  // Adds to `counter` what `total`, counted elsewhere, has gained since it was last `seen`.
  void CatchUp(const std::string& counter, const std::vector<std::string>& labels, double total,
               double* seen);

  MetricsRegistry r_;
  double store_write_errors_seen_ = 0;
  double store_dropped_seen_ = 0;
  double fleet_reconnects_seen_ = 0;
  double fleet_refused_seen_ = 0;
};

}  // namespace guardian
