#pragma once
// The ten failure modes: canonical ids (used in config, API, metrics, chaos) and their MTTR
// targets.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace guardian {

struct ModeInfo {
  std::string_view id;
  int64_t target_ms;  // default MTTR target (DESIGN.md)
};

const std::vector<ModeInfo>& AllModes();
// nullptr when `id` is not one of the ten modes.
const ModeInfo* FindMode(std::string_view id);
// "db_corruption, port_conflict, ..." for error messages.
std::string ModeList();

}  // namespace guardian
