#pragma once
// Observation: what one probe saw. Failing observations carry evidence a human can act on.

#include <string>

namespace guardian {

struct Observation {
  enum class Health { kOk, kFailing, kUnknown };
  Health health = Health::kUnknown;
  std::string evidence;

  static Observation Ok(std::string why = {}) { return {Health::kOk, std::move(why)}; }
  static Observation Failing(std::string why) { return {Health::kFailing, std::move(why)}; }
  static Observation Unknown(std::string why) { return {Health::kUnknown, std::move(why)}; }
  bool ok() const { return health == Health::kOk; }
  bool failing() const { return health == Health::kFailing; }
};

}  // namespace guardian
