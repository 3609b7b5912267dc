#pragma once
// Observation: what one probe saw. Failing observations carry evidence a human can act on.

#include <cstdint>
#include <map>
#include <string>

namespace guardian {

struct Observation {
  enum class Health { kOk, kFailing, kUnknown };
  Health health = Health::kUnknown;
  std::string evidence;
  // Wall ms at which the failure really began, when the detector knows it from the event itself
  // (the exit time of an OOM-killed process) and it is earlier than this probe; 0: not known.
  // MTTD and MTTR are then counted from it, not from the probe that noticed.
  int64_t began_at_ms = 0;
  // Figures the detector exports about what it watches, shown with the check in status and as
  // guardian_check_gauge{name=...} in metrics (e.g. a circuit breaker's breaker_open 0 or 1).
  std::map<std::string, double> gauges;
  // Set (to what changed) when something the playbook acts with has changed since the detector
  // last looked, e.g. an operator put new credentials in a key file: an escalated check's
  // automatic hold lifts at once, so the playbook tries again with it instead of waiting out the
  // cool-down. Detectors report each change once, so this cannot loop.
  std::string new_input;
  // Ok only because a remediation holds what it watches in a degraded mode (offline mode while
  // the network is still down, a breaker open on a primary still failing): the fault is still
  // there, so checks that depend on this one stay linked to it (depends_on).
  bool degraded = false;

  static Observation Ok(std::string why = {}) { return Make(Health::kOk, std::move(why)); }
  static Observation Failing(std::string why) { return Make(Health::kFailing, std::move(why)); }
  static Observation Unknown(std::string why) { return Make(Health::kUnknown, std::move(why)); }
  static Observation Make(Health h, std::string why) {
    Observation o;
    o.health = h;
    o.evidence = std::move(why);
    return o;
  }
  bool ok() const { return health == Health::kOk; }
  bool failing() const { return health == Health::kFailing; }
};

}  // namespace guardian
