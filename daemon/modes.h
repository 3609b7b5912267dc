#pragma once
// The check modes: canonical ids (used in config, API, metrics, chaos), their MTTR targets and
// the playbook a check of the mode runs by default. The ten failure modes of the stack come
// first; then the general checks (a process by its pidfile, a file, a filesystem's space, an
// HTTP endpoint, a TCP port) that Monit-style configs are made of.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace guardian {

struct ModeInfo {
  std::string_view id;
  int64_t target_ms;          // default MTTR target (DESIGN.md)
  std::string_view playbook;  // the shipped playbook a check of this mode runs by default
  bool general = false;       // a general check, not one of the ten failure modes
};

// The ten failure modes, then the general checks.
const std::vector<ModeInfo>& AllModes();
// nullptr when `id` is no mode.
const ModeInfo* FindMode(std::string_view id);
// "db_corruption, port_conflict, ..." for error messages.
std::string ModeList();

}  // namespace guardian
