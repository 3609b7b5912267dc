#include "daemon/boot_report.h"

#include <algorithm>

namespace guardian {
namespace {

int64_t Int(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return (it != j.end() && it->is_number_integer()) ? it->get<int64_t>() : 0;
}

}  // namespace

std::string ChunkTimings(const nlohmann::json& chunks, int64_t now_ms) {
  std::string out;
  for (const auto& c : chunks) {
    if (!c.is_object()) continue;
    std::string name = c.value("name", std::string("?"));
    std::string part;
    if (c.value("skipped", false)) {
      part = name + " skipped";
    } else if (Int(c, "started_at") == 0) {
      continue;  // not reached yet
    } else if (Int(c, "ended_at") == 0) {
      part = name + " " + std::to_string(now_ms - Int(c, "started_at")) + "+ ms (running, " +
             (c.value("critical", false) ? "critical" : "non-critical") + ")";
    } else {
      part = name + " " + std::to_string(Int(c, "ended_at") - Int(c, "started_at")) + " ms";
    }
    out += (out.empty() ? "" : ", ") + part;
  }
  return out;
}

BootVerdict JudgeBoot(const nlohmann::json& status, pid_t pid, int64_t now_ms,
                      const BootLimits& limits) {
  BootVerdict v;
  if (!status.is_object() || Int(status, "pid") != pid) {
    v.observation = Observation::Unknown("no boot report from the current process yet");
    return v;
  }
  const nlohmann::json boot = status.value("boot", nlohmann::json::object());
  const nlohmann::json chunks = boot.value("chunks", nlohmann::json::array());
  std::string state = status.value("state", std::string());
  std::string timings = ChunkTimings(chunks, now_ms);
  int64_t started = Int(boot, "started_at");
  if (state != "booting") {
    for (const auto& c : chunks) {
      if (c.is_object() && c.value("skipped", false))
        v.skipped += (v.skipped.empty() ? "" : ", ") + c.value("name", std::string("?"));
    }
    v.degraded = !v.skipped.empty();
    int64_t ready_at = Int(boot, "ready_at");
    std::string took =
        ready_at > 0 && started > 0 ? " in " + std::to_string(ready_at - started) + " ms" : "";
    v.observation = Observation::Ok("booted" + took + (timings.empty() ? "" : ": " + timings));
    return v;
  }
  v.booting = true;
  int64_t next = started > 0 ? started + limits.deadline_ms : 0;
  std::string over;
  for (const auto& c : chunks) {
    if (!c.is_object() || Int(c, "started_at") == 0 || Int(c, "ended_at") != 0) continue;
    int64_t chunk_deadline = Int(c, "started_at") + limits.chunk_deadline_ms;
    if (now_ms >= chunk_deadline) {
      over = "chunk " + c.value("name", std::string("?")) + " has run " +
             std::to_string(now_ms - Int(c, "started_at")) + " ms (deadline " +
             std::to_string(limits.chunk_deadline_ms) + " ms)";
    } else if (next == 0 || chunk_deadline < next) {
      next = chunk_deadline;
    }
  }
  if (over.empty() && started > 0 && now_ms >= started + limits.deadline_ms) {
    over = "boot has run " + std::to_string(now_ms - started) + " ms (deadline " +
           std::to_string(limits.deadline_ms) + " ms)";
  }
  if (!over.empty()) {
    v.observation = Observation::Failing("slow boot: " + over + "; " + timings);
    return v;
  }
  v.next_deadline_ms = next;
  v.observation = Observation::Ok("booting, within deadlines: " + timings);
  return v;
}

}  // namespace guardian
