// guardian: the operator's CLI. This first version reads the store and status file directly;
// the socket API takes over in a later version without changing the commands.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/store.h"
#include "detectors/detector.h"
#include "plugins/playbook_library.h"

namespace {
namespace fs = std::filesystem;
using guardian::Status;
using nlohmann::json;

constexpr int kExitNoDaemon = 3;

// Where the daemon keeps its state: --state-dir, else the state_dir of --config, else
// GUARDIAN_STATE_DIR, else the default.
bool FindStateDir(const std::string& state_dir, const std::string& config, std::string* out) {
  if (!state_dir.empty()) {
    *out = state_dir;
    return true;
  }
  if (!config.empty()) {
    auto load = guardian::LoadConfigFile(config, guardian::DetectorRegistry::Get().SchemaLookup());
    if (!load.ok()) {
      for (const auto& e : load.errors) std::cerr << e.ToString() << "\n";
      return false;
    }
    *out = load.config->state_dir;
    return true;
  }
  const char* env = std::getenv("GUARDIAN_STATE_DIR");
  *out = env && *env ? env : "/var/lib/guardian";
  return true;
}

int OpenStore(const std::string& dir, std::unique_ptr<guardian::Store>* store) {
  std::string path = dir + "/guardian.db";
  if (!fs::exists(path)) {
    std::cerr << "guardian: no store at " << path
              << "\n  start the daemon with: guardiand --config /path/to/guardian.yaml"
                 "\n  or point at its state with --config FILE or --state-dir DIR\n";
    return kExitNoDaemon;
  }
  Status s = guardian::Store::Open(path, true, store);
  if (!s.ok()) {
    std::cerr << "guardian: " << s.ToString() << "\n";
    return 1;
  }
  return 0;
}

// True while a guardiand holds the state dir's lock (it takes it exclusively for its life).
bool DaemonHoldsLock(const std::string& dir) {
  int fd = ::open((dir + "/guardiand.lock").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

std::string FormatTime(int64_t ms) {
  if (ms == 0) return "-";
  time_t t = static_cast<time_t>(ms / 1000);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return buf;
}

std::string FormatMs(const json& v) {
  return v.is_null() ? "-" : std::to_string(v.get<int64_t>()) + " ms";
}

void PrintIncidentTable(const std::vector<guardian::IncidentRecord>& list) {
  std::printf("%-6s %-20s %-16s %-10s %-19s %10s %10s %10s %s\n", "ID", "CHECK", "MODE", "STATE",
              "ONSET", "MTTD", "MTTR", "TARGET", "ATTEMPTS");
  for (const auto& r : list) {
    json j = r.ToJson();
    std::string mttr = FormatMs(j["mttr_ms"]);
    if (j["within_target"] == false) mttr += "!";
    std::printf("%-6lld %-20s %-16s %-10s %-19s %10s %10s %10s %d\n", static_cast<long long>(r.id),
                r.check_id.c_str(), r.mode.c_str(), r.state.c_str(), FormatTime(r.onset_at).c_str(),
                FormatMs(j["mttd_ms"]).c_str(), mttr.c_str(),
                (std::to_string(r.target_ms) + " ms").c_str(), r.attempts);
  }
}

void PrintIncident(const guardian::IncidentRecord& r) {
  json j = r.ToJson();
  std::printf("incident %lld  check %s  mode %s  state %s\n", static_cast<long long>(r.id),
              r.check_id.c_str(), r.mode.c_str(), r.state.c_str());
  std::printf(
      "  onset     %s\n  detected  %s (MTTD %s)\n  recovered %s (MTTR %s, target %lld ms%s)\n",
      FormatTime(r.onset_at).c_str(), FormatTime(r.detected_at).c_str(),
      FormatMs(j["mttd_ms"]).c_str(), FormatTime(r.recovered_at).c_str(),
      FormatMs(j["mttr_ms"]).c_str(), static_cast<long long>(r.target_ms),
      j["within_target"] == false ? ", OVER TARGET" : "");
  std::printf("  playbook  %s, %d attempt(s)\n  evidence  %s\n  reason    %s\n  steps:\n",
              r.playbook.c_str(), r.attempts, r.evidence.c_str(), r.reason.c_str());
  for (const auto& s : r.steps) {
    long long took = s.ended_at ? static_cast<long long>(s.ended_at - s.started_at) : -1;
    std::printf("    #%d %-10s %-12s %6lld ms  %s\n", s.attempt, s.phase.c_str(), s.status.c_str(),
                took, s.message.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"guardian: operate the Guardian watchdog"};
  app.require_subcommand(1);
  std::string config, state_dir;
  app.add_option("--config", config, "the daemon's config file (to find its state)");
  app.add_option("--state-dir", state_dir, "the daemon's state dir");

  bool as_json = false;
  auto* status_cmd = app.add_subcommand("status", "checks and daemon health");
  status_cmd->add_flag("--json", as_json, "print JSON");

  guardian::IncidentFilter filter;
  auto* incidents_cmd = app.add_subcommand("incidents", "list incidents, newest first");
  incidents_cmd->add_flag("--json", as_json, "print JSON");
  incidents_cmd->add_option("--check", filter.check_id, "only this check");
  incidents_cmd->add_option("--mode", filter.mode, "only this mode");
  incidents_cmd->add_option("--state", filter.state, "only this state");
  incidents_cmd->add_option("--since", filter.since, "onset at or after (ms since epoch)");
  incidents_cmd->add_option("--limit", filter.limit, "at most this many")
      ->check(CLI::Range(1, 100000));

  int64_t incident_id = 0;
  auto* incident_cmd = app.add_subcommand("incident", "one incident with its steps");
  incident_cmd->add_option("ID", incident_id, "incident id")->required();
  incident_cmd->add_flag("--json", as_json, "print JSON");

  std::string check_file;
  auto* check_cmd =
      app.add_subcommand("check-config", "validate a config file (exit 0 ok, 2 errors)");
  check_cmd->add_option("FILE", check_file)->required();

  std::vector<std::string> lint_files;
  auto* playbook_cmd = app.add_subcommand("playbook", "playbook tools");
  playbook_cmd->require_subcommand(1);
  auto* lint_cmd =
      playbook_cmd->add_subcommand("lint", "load playbooks as the daemon would and report errors");
  lint_cmd->add_option("FILE", lint_files)->required();

  CLI11_PARSE(app, argc, argv);

  if (*check_cmd) {
    return guardian::CheckConfigCommand(check_file);
  }
  if (*lint_cmd) {
    int bad = 0;
    for (const auto& f : lint_files) {
      guardian::PlaybookInfo info;
      Status s = guardian::PlaybookLibrary::Inspect(f, guardian::PlaybookLimits{}, &info);
      if (s.ok()) {
        std::cout << f << ": ok (" << info.name << ", mode " << info.mode << ")\n";
      } else {
        std::cerr << s.message() << "\n";
        ++bad;
      }
    }
    return bad ? 2 : 0;
  }

  std::string dir;
  if (!FindStateDir(state_dir, config, &dir)) return 2;

  if (*status_cmd) {
    std::ifstream in(dir + "/status.json");
    if (in && !DaemonHoldsLock(dir)) {
      std::cerr << "guardian: guardiand is not running (" << dir
                << "/status.json is left from a daemon that died)"
                   "\n  start the daemon with: guardiand --config /path/to/guardian.yaml\n";
      return kExitNoDaemon;
    }
    if (!in) {
      std::cerr << "guardian: no daemon status in " << dir
                << "\n  start the daemon with: guardiand --config /path/to/guardian.yaml\n";
      return kExitNoDaemon;
    }
    json j = json::parse(in, nullptr, false);
    if (j.is_discarded()) {
      std::cerr << "guardian: " << dir << "/status.json is not valid JSON\n";
      return 1;
    }
    if (as_json) {
      std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      return 0;
    }
    std::printf("guardiand pid %lld, loop lag p99 %lld us\n", j.value("pid", 0LL),
                j["loop_lag_us"].value("p99", 0LL));
    std::printf("%-20s %-16s %-8s %-6s %s\n", "CHECK", "MODE", "STATE", "HELD", "EVIDENCE");
    for (const auto& c : j["checks"]) {
      std::printf("%-20s %-16s %-8s %-6s %s\n", c.value("id", "").c_str(),
                  c.value("mode", "").c_str(), c.value("state", "").c_str(),
                  c.value("held", false) ? "yes" : "no", c.value("evidence", "").c_str());
    }
    return 0;
  }

  std::unique_ptr<guardian::Store> store;
  if (int rc = OpenStore(dir, &store); rc != 0) return rc;
  if (*incidents_cmd) {
    std::vector<guardian::IncidentRecord> list;
    Status s = store->ListIncidents(filter, &list);
    if (!s.ok()) {
      std::cerr << "guardian: " << s.ToString() << "\n";
      return 1;
    }
    if (as_json) {
      json arr = json::array();
      for (const auto& r : list) arr.push_back(r.ToJson());
      std::cout << arr.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      PrintIncidentTable(list);
    }
    return 0;
  }
  if (*incident_cmd) {
    std::optional<guardian::IncidentRecord> rec;
    Status s = store->GetIncident(incident_id, &rec);
    if (!s.ok()) {
      std::cerr << "guardian: " << s.ToString() << "\n";
      return 1;
    }
    if (!rec) {
      std::cerr << "guardian: no incident " << incident_id << "\n";
      return 4;
    }
    if (as_json) {
      std::cout << rec->ToJson().dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
                << "\n";
    } else {
      PrintIncident(*rec);
    }
    return 0;
  }
  return 0;
}
