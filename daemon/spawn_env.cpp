#include "daemon/spawn_env.h"

#include "daemon/program_policy.h"

namespace guardian {

std::vector<std::string> SpawnEnvironment(const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env = {{"PATH", kSpawnPath}, {"LANG", "C.UTF-8"}};
  // Replaced, not appended: with a name twice, getenv would find the first (the default).
  for (const auto& [k, v] : extra) env[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

EnvBlock::EnvBlock(std::vector<std::string> entries) : entries_(std::move(entries)) {
  for (auto& e : entries_) ptrs_.push_back(e.data());
  ptrs_.push_back(nullptr);
}

void ApplyRunAs(const RunAs& run_as, uv_process_options_t* o) {
  // ResolveRunAs gives a user its primary group, so a uid never changes alone (which would
  // leave the child in root's group).
  if (run_as.gid >= 0) {
    o->flags |= UV_PROCESS_SETGID;
    o->gid = static_cast<uv_gid_t>(run_as.gid);
  }
  if (run_as.uid >= 0) {
    o->flags |= UV_PROCESS_SETUID;
    o->uid = static_cast<uv_uid_t>(run_as.uid);
  }
}

}  // namespace guardian
