#include "daemon/modes.h"

namespace guardian {

const std::vector<ModeInfo>& AllModes() {
  static const std::vector<ModeInfo> modes = {
      {"db_corruption", 60'000, "db_corruption"},
      {"port_conflict", 10'000, "port_conflict"},
      {"slow_boot", 5'000, "slow_boot"},
      {"out_of_memory", 30'000, "out_of_memory"},
      {"disk_full", 45'000, "disk_full"},
      {"network_unreachable", 5'000, "network_unreachable"},
      {"api_timeout", 15'000, "api_timeout"},
      {"missing_config", 10'000, "missing_config"},
      {"invalid_credentials", 5'000, "invalid_credentials"},
      {"model_server_down", 20'000, "model_server_down"},
      // General checks: their remedies are the operator's own commands (docs/config.md).
      {"process", 10'000, "process", true},
      {"file", 10'000, "exec", true},
      {"filesystem", 30'000, "exec", true},
      {"http", 15'000, "exec", true},
      {"tcp", 10'000, "exec", true},
  };
  return modes;
}

const ModeInfo* FindMode(std::string_view id) {
  for (const auto& m : AllModes()) {
    if (m.id == id) return &m;
  }
  return nullptr;
}

std::string ModeList() {
  std::string out;
  for (const auto& m : AllModes()) {
    if (!out.empty()) out += ", ";
    out += m.id;
  }
  return out;
}

}  // namespace guardian
