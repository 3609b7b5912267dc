#pragma once
// Observation: what one probe saw. Failing observations carry evidence a human can act on.

#include <cstdint>
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

  static Observation Ok(std::string why = {}) { return {Health::kOk, std::move(why)}; }
  static Observation Failing(std::string why) { return {Health::kFailing, std::move(why)}; }
  static Observation Unknown(std::string why) { return {Health::kUnknown, std::move(why)}; }
  bool ok() const { return health == Health::kOk; }
  bool failing() const { return health == Health::kFailing; }
};

}  // namespace guardian
