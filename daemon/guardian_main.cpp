// guardian: the operator's CLI. Every command but the local ones (check-config, playbook
// lint, and incidents/incident/mttr with --offline, which read the store) talks to guardiand
// through its HTTP API, on the daemon's Unix socket by default.
//
// Exit codes: 0 ok; 1 error; 2 bad config or playbook; 3 no daemon answers; 4 not found;
// 5 refused (the check is held, in observe mode, or has an open incident).
#include <CLI/CLI.hpp>
#include <cctype>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "daemon/api.h"
#include "daemon/api_client.h"
#include "daemon/audit_chain.h"
#include "daemon/clock.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/file_util.h"
#include "daemon/report_html.h"
#include "detectors/detector.h"
#include "plugins/playbook_library.h"

namespace {
using guardian::ApiClient;
using guardian::ApiReply;
using guardian::Status;
using nlohmann::json;

constexpr int kExitError = 1;
constexpr int kExitNoDaemon = 3;
constexpr int kExitNotFound = 4;
constexpr int kExitRefused = 5;
const auto kReplace = json::error_handler_t::replace;

struct Target {
  std::string socket;
  std::string url;
};

// Where the daemon listens: --url, --socket, GUARDIAN_SOCKET, the api.socket of --config,
// --state-dir's socket, GUARDIAN_STATE_DIR's socket, else the default state dir's.
bool FindDaemon(const std::string& url, const std::string& socket, const std::string& config,
                const std::string& state_dir, Target* out) {
  if (!url.empty()) {
    out->url = url;
    return true;
  }
  if (!socket.empty()) {
    out->socket = socket;
    return true;
  }
  if (const char* env = std::getenv("GUARDIAN_SOCKET"); env && *env) {
    out->socket = env;
    return true;
  }
  if (!config.empty()) {
    auto load = guardian::LoadConfigFile(config, guardian::DetectorRegistry::Get().SchemaLookup());
    if (!load.ok()) {
      for (const auto& e : load.errors) std::cerr << e.ToString() << "\n";
      return false;
    }
    out->socket = load.config->api.socket;
    return true;
  }
  std::string dir = state_dir;
  if (dir.empty()) {
    const char* env = std::getenv("GUARDIAN_STATE_DIR");
    dir = env && *env ? env : "/var/lib/guardian";
  }
  out->socket = dir + "/guardian.sock";
  return true;
}

// One API call with the CLI's error handling; returns an exit code (0 when the call succeeded).
int Call(const ApiClient& api, const std::string& method, const std::string& path, const json& body,
         ApiReply* reply) {
  Status s = api.Call(method, path, body, reply);
  if (s.code() == Status::Code::kTimeout) {
    std::cerr << "guardian: guardiand " << s.message() << "\n";
    return kExitError;
  }
  if (!s.ok()) {
    std::cerr << "guardian: no guardiand answers at " << api.Where() << " (" << s.message()
              << ")\n  start one with: guardiand --config /etc/guardian/guardian.yaml"
                 "\n  (or: systemctl start guardiand), or point at it with --socket PATH,"
                 " GUARDIAN_SOCKET or --config FILE\n";
    return kExitNoDaemon;
  }
  if (reply->status >= 200 && reply->status < 300) {
    if (reply->json.is_discarded() && path != "/metrics") {
      std::cerr << "guardian: the daemon's reply is not JSON\n";
      return kExitError;
    }
    return 0;
  }
  std::cerr << "guardian: " << reply->ErrorMessage() << "\n";
  if (reply->json.is_object() && reply->json["error"].contains("errors")) {
    for (const auto& e : reply->json["error"]["errors"])
      std::cerr << "  " << e.get<std::string>() << "\n";
  }
  if (reply->status == 404) return kExitNotFound;
  if (reply->status == 409) return kExitRefused;
  if (reply->status == 422) return 2;
  return kExitError;
}

// Opens the daemon's store read-only, found from --state-dir, --config's state_dir,
// GUARDIAN_STATE_DIR or /var/lib/guardian. Returns an exit code; fills `targets` from the config.
int OpenStoreReadOnly(const std::string& config, std::string state_dir,
                      std::unique_ptr<guardian::Store>* store,
                      std::map<std::string, int64_t>* targets) {
  if (!config.empty()) {
    auto load = guardian::LoadConfigFile(config, guardian::DetectorRegistry::Get().SchemaLookup());
    if (!load.ok()) {
      for (const auto& e : load.errors) std::cerr << e.ToString() << "\n";
      return 2;
    }
    if (state_dir.empty()) state_dir = load.config->state_dir;  // --state-dir wins
    *targets = guardian::MttrTargets(*load.config);
  }
  if (state_dir.empty()) {
    const char* env = std::getenv("GUARDIAN_STATE_DIR");
    state_dir = env && *env ? env : "/var/lib/guardian";
  }
  Status s = guardian::Store::Open(state_dir + "/guardian.db", true, store);
  if (!s.ok()) {
    std::cerr << "guardian: " << s.message() << "\n";
    return kExitError;
  }
  return 0;
}

// --offline: incidents, incident and mttr read straight from the store, read-only, for a
// post-mortem while the daemon is down. Returns an exit code; fills `out` on success.
int ReadOffline(const std::string& config, const std::string& state_dir, const std::string& what,
                const std::map<std::string, std::string>& query, int64_t id, json* out) {
  std::map<std::string, int64_t> targets;
  std::unique_ptr<guardian::Store> store;
  if (int rc = OpenStoreReadOnly(config, state_dir, &store, &targets)) return rc;
  Status s;
  if (what == "incidents") {
    guardian::IncidentFilter filter;
    s = guardian::ParseIncidentFilter(query, &filter);
    std::vector<guardian::IncidentRecord> list;
    if (s.ok()) s = store->ListIncidents(filter, &list);
    *out = json::array();
    for (const auto& r : list) out->push_back(r.ToJson());
  } else if (what == "incident") {
    std::optional<guardian::IncidentRecord> rec;
    s = store->GetIncident(id, &rec);
    if (s.ok() && !rec) {
      std::cerr << "guardian: no incident " << id << "\n";
      return kExitNotFound;
    }
    if (s.ok()) *out = rec->ToJson();
  } else {
    int64_t since = query.count("since") ? std::stoll(query.at("since")) : 0;
    std::vector<guardian::RecoveryTime> times;
    s = store->RecoveryTimes(since, &times);
    if (s.ok()) *out = guardian::MttrReport(times, targets);
  }
  if (!s.ok()) {
    std::cerr << "guardian: " << s.message() << "\n";
    return kExitError;
  }
  return 0;
}

std::string FormatTime(const json& v) {
  if (!v.is_number() || v.get<int64_t>() == 0) return "-";
  time_t t = static_cast<time_t>(v.get<int64_t>() / 1000);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  return buf;
}

std::string FormatMs(const json& v) {
  if (!v.is_number()) return "-";
  int64_t ms = v.get<int64_t>();
  if (ms < 10'000) return std::to_string(ms) + " ms";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", static_cast<double>(ms) / 1000.0);
  return buf;
}

std::string Str(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "-";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

void PrintJson(const json& j) { std::cout << j.dump(2, ' ', false, kReplace) << "\n"; }

// `guardian audit verify`: reads the store (the daemon may be running) and walks the chain.
// Exit 0 when whole, 1 when broken, like `sqlite3 PRAGMA integrity_check` users expect.
int VerifyAuditCommand(const std::string& config, const std::string& state_dir, bool as_json) {
  std::map<std::string, int64_t> targets;
  std::unique_ptr<guardian::Store> store;
  if (int rc = OpenStoreReadOnly(config, state_dir, &store, &targets)) return rc;
  guardian::AuditChainVerifier verifier;
  Status s = store->VerifyAudit(&verifier);
  if (!s.ok()) {
    std::cerr << "guardian: audit trail: " << s.message() << "\n";
    return kExitError;
  }
  if (as_json) {
    json out = {{"ok", verifier.ok()},
                {"rows", verifier.rows()},
                {"head", verifier.head()},
                {"head_id", verifier.head_id()}};
    if (!verifier.ok()) {
      out["broken_row"] = verifier.broken_id();
      out["reason"] = verifier.reason();
    }
    PrintJson(out);
  } else if (verifier.ok()) {
    std::cout << "audit trail ok: " << verifier.rows() << " rows, head " << verifier.head() << "\n";
  } else {
    std::cout << "audit trail broken at row " << verifier.broken_id() << ": " << verifier.reason()
              << "\n"
              << "rows 1 to " << verifier.head_id() << " check out (head " << verifier.head()
              << ")\n";
  }
  return verifier.ok() ? 0 : 1;
}

void PrintStatus(const json& j) {
  std::printf("guardiand pid %s, mode %s, up %s, loop lag p99 %s us, store latency %s ms\n",
              Str(j, "pid").c_str(), Str(j, "mode").c_str(),
              FormatMs(j.value("uptime_ms", json())).c_str(),
              Str(j.value("loop_lag_us", json::object()), "p99").c_str(),
              Str(j, "store_latency_ms").c_str());
  const json store = j.value("store", json::object());
  if (store.value("state", "ok") == "degraded") {
    std::printf(
        "store degraded: the disk refuses writes (%s); %s journal writes wait in memory, "
        "%s dropped\n",
        Str(store, "last_error").c_str(), Str(store, "pending_writes").c_str(),
        Str(store, "dropped_writes").c_str());
  }
  std::printf("%-20s %-20s %-8s %-8s %-8s %-6s %s\n", "CHECK", "MODE", "STATE", "HELD", "INCIDENT",
              "BUDGET", "EVIDENCE");
  for (const auto& c : j.value("checks", json::array())) {
    std::string held = c.value("held", false) ? "yes" : "no";
    std::printf("%-20s %-20s %-8s %-8s %-8s %-6s %s\n", Str(c, "id").c_str(),
                Str(c, "mode").c_str(), Str(c, "state").c_str(), held.c_str(),
                Str(c, "incident").c_str(), Str(c, "budget_remaining").c_str(),
                Str(c, "evidence").c_str());
    if (c.value("held", false)) std::printf("%22s hold: %s\n", "", Str(c, "hold_reason").c_str());
  }
  const json services = j.value("services", json::array());
  if (!services.empty()) {
    std::printf("%-20s %-9s %-8s %-6s %-7s %-8s %s\n", "SERVICE", "STATE", "PID", "PORT", "STARTS",
                "FAILURES", "LAST EXIT");
  }
  for (const auto& s : services) {
    std::string port = Str(s, "port");
    if (s.contains("port_moved_reason"))
      port += " (moved from " + Str(s, "preferred_port") + ": " + Str(s, "port_moved_reason") + ")";
    std::string last = "-";
    if (s.contains("last_exit")) {
      const json& e = s["last_exit"];
      last = e.value("signal", 0) != 0 ? "signal " + Str(e, "signal") : "code " + Str(e, "code");
      if (e.value("asked", false)) last += " (asked)";
    }
    std::printf("%-20s %-9s %-8s %-6s %-7s %-8s %s\n", Str(s, "name").c_str(),
                Str(s, "state").c_str(), Str(s, "pid").c_str(), port.c_str(),
                Str(s, "starts").c_str(), Str(s, "failures").c_str(), last.c_str());
  }
  for (const auto& i : j.value("incidents", json::array())) {
    std::printf("incident %s (%s): %s%s%s\n", Str(i, "id").c_str(), Str(i, "check").c_str(),
                Str(i, "state").c_str(), i.value("reason", "").empty() ? "" : ", ",
                i.value("reason", "").c_str());
  }
  for (const char* key : {"config_errors", "playbook_errors"}) {
    const json errs = j.value(key, json::array());
    if (errs.empty()) continue;
    std::printf("%s (the previous version stays in use):\n",
                std::string(key) == "config_errors" ? "config errors" : "playbook errors");
    for (const auto& e : errs) std::printf("  %s\n", e.get<std::string>().c_str());
  }
}

void PrintIncidentTable(const json& list) {
  std::printf("%-6s %-20s %-20s %-10s %-19s %9s %9s %9s %s\n", "ID", "CHECK", "MODE", "STATE",
              "ONSET", "MTTD", "MTTR", "TARGET", "ATTEMPTS");
  for (const auto& r : list) {
    std::string mttr = FormatMs(r["mttr_ms"]);
    if (r.value("within_target", json()) == false) mttr += "!";
    std::printf("%-6s %-20s %-20s %-10s %-19s %9s %9s %9s %s\n", Str(r, "id").c_str(),
                Str(r, "check").c_str(), Str(r, "mode").c_str(), Str(r, "state").c_str(),
                FormatTime(r["onset_at"]).c_str(), FormatMs(r["mttd_ms"]).c_str(), mttr.c_str(),
                FormatMs(r["target_ms"]).c_str(), Str(r, "attempts").c_str());
  }
}

void PrintIncident(const json& r) {
  std::printf("incident %s  check %s  mode %s  state %s\n", Str(r, "id").c_str(),
              Str(r, "check").c_str(), Str(r, "mode").c_str(), Str(r, "state").c_str());
  std::printf("  onset     %s\n  detected  %s (MTTD %s)\n  recovered %s (MTTR %s, target %s%s)\n",
              FormatTime(r["onset_at"]).c_str(), FormatTime(r["detected_at"]).c_str(),
              FormatMs(r["mttd_ms"]).c_str(), FormatTime(r["recovered_at"]).c_str(),
              FormatMs(r["mttr_ms"]).c_str(), FormatMs(r["target_ms"]).c_str(),
              r.value("within_target", json()) == false ? ", OVER TARGET" : "");
  if (r.value("caused_by", json()).is_number())
    std::printf("  caused by incident %s (depends_on): no playbook of its own\n",
                Str(r, "caused_by").c_str());
  std::printf("  playbook  %s, %s attempt(s)\n  evidence  %s\n  reason    %s\n  steps:\n",
              Str(r, "playbook").c_str(), Str(r, "attempts").c_str(), Str(r, "evidence").c_str(),
              Str(r, "reason").c_str());
  for (const auto& s : r.value("steps", json::array())) {
    std::string took = "-";
    if (s["ended_at"].is_number() && s["ended_at"].get<int64_t>() > 0) {
      took = FormatMs(s["ended_at"].get<int64_t>() - s["started_at"].get<int64_t>());
    }
    std::printf("    #%-2s %-10s %-12s %9s  %s\n", Str(s, "attempt").c_str(),
                Str(s, "phase").c_str(), Str(s, "status").c_str(), took.c_str(),
                s.value("message", "").c_str());
  }
}

void PrintMttr(const json& j) {
  std::printf("%-20s %6s %9s %9s %9s %9s %9s  %s\n", "MODE", "COUNT", "MTTD p50", "MTTR p50",
              "MTTR p95", "MTTR max", "TARGET", "");
  for (const auto& m : j.value("modes", json::array())) {
    std::string flag;
    if (m.value("over_target", false)) flag = "OVER TARGET (p95)";
    if (m.value("over_target_count", 0) > 0) {
      flag +=
          (flag.empty() ? "" : "; ") + std::to_string(m["over_target_count"].get<int>()) + " over";
    }
    std::printf("%-20s %6s %9s %9s %9s %9s %9s  %s\n", Str(m, "mode").c_str(),
                Str(m, "count").c_str(), FormatMs(m["mttd_p50_ms"]).c_str(),
                FormatMs(m["mttr_p50_ms"]).c_str(), FormatMs(m["mttr_p95_ms"]).c_str(),
                FormatMs(m["mttr_max_ms"]).c_str(), FormatMs(m["target_ms"]).c_str(), flag.c_str());
  }
}

// `guardian fleet status`: the leader and its epoch, each host, each mode's slots.
void PrintFleet(const json& j) {
  const json me = j.value("this_host", json::object());
  const json leads = me.value("leader", json::object());
  std::printf(
      "fleet %s: this host %s is %s%s\n", Str(j, "fleet").c_str(), Str(me, "host").c_str(),
      Str(me, "state").c_str(),
      leads.value("leading", false) ? (", leading with epoch " + Str(leads, "epoch")).c_str() : "");
  if (!j.value("reachable", false)) {
    std::printf("etcd: %s\n", Str(j, "error").c_str());
    return;
  }
  const json leader = j.value("leader", json());
  if (leader.is_object()) {
    std::printf("leader: %s, epoch %s\n", Str(leader, "host").c_str(),
                Str(leader, "epoch").c_str());
  } else {
    std::printf("leader: none\n");
  }
  const json sum = j.value("summary", json());
  if (sum.is_object()) {
    std::printf("last summary: by %s with epoch %s at %s\n", Str(sum, "host").c_str(),
                Str(sum, "epoch").c_str(), FormatTime(sum["at"]).c_str());
  }
  std::printf("%-20s %-6s %-12s %-14s %-8s %s\n", "HOST", "LEADER", "HEARTBEAT", "OPEN INCIDENTS",
              "PID", "VERSION");
  for (const auto& h : j.value("hosts", json::array())) {
    std::printf("%-20s %-6s %-12s %-14s %-8s %s\n", Str(h, "host").c_str(),
                h.value("leader", false) ? "yes" : "",
                (FormatMs(h["heartbeat_age_ms"]) + " ago").c_str(),
                Str(h, "open_incidents").c_str(), Str(h, "pid").c_str(), Str(h, "version").c_str());
  }
  std::printf("%-20s %-15s %-12s %-20s %s\n", "MODE", "MAX CONCURRENT", "MIN HEALTHY", "ACTING",
              "IN LINE");
  auto join = [](const json& list) {
    std::string out;
    for (const auto& h : list) out += (out.empty() ? "" : ", ") + h.get<std::string>();
    return out.empty() ? std::string("-") : out;
  };
  for (const auto& b : j.value("budgets", json::array())) {
    std::printf("%-20s %-15s %-12s %-20s %s\n", Str(b, "mode").c_str(),
                Str(b, "max_concurrent").c_str(), Str(b, "min_healthy").c_str(),
                join(b["acting"]).c_str(), join(b["in_line"]).c_str());
  }
}

void PrintRun(const json& r) {
  if (r.value("dry_run", false)) {
    std::printf("dry run of %s (playbook %s): nothing was changed\n", Str(r, "check").c_str(),
                Str(r, "playbook").c_str());
    for (const auto& ph : r.value("phases", json::array())) {
      std::printf(
          "  %s: %s%s\n", Str(ph, "phase").c_str(), Str(ph, "status").c_str(),
          ph.value("message", "").empty() ? "" : (" (" + ph.value("message", "") + ")").c_str());
    }
    std::printf("would do:\n");
    const json actions = r.value("actions", json::array());
    if (actions.empty()) std::printf("  (nothing)\n");
    for (const auto& a : actions) {
      std::string note = a.value("note", "");
      std::printf("  [%s] %s(%s)%s\n", Str(a, "phase").c_str(), Str(a, "call").c_str(),
                  a.value("args", "").c_str(), note.empty() ? "" : (" -- " + note).c_str());
    }
    return;
  }
  if (r.value("result", "") == "healthy") {
    std::printf(
        "check %s is healthy (%s); nothing to do (use --force to run the playbook anyway)\n",
        Str(r, "check").c_str(), Str(r, "evidence").c_str());
    return;
  }
  std::printf("check %s: incident %s opened (%s); follow it with: guardian incident %s\n",
              Str(r, "check").c_str(), Str(r, "incident").c_str(), Str(r, "evidence").c_str(),
              Str(r, "incident").c_str());
}

std::string QueryString(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string q;
  for (const auto& [k, v] : params) {
    if (v.empty()) continue;
    // Check ids and states are plain tokens; escape anyway so nothing can split the query.
    std::string enc;
    for (unsigned char c : v) {
      if (std::isalnum(c) || c == '-' || c == '_' || c == '.') {
        enc += static_cast<char>(c);
      } else {
        char buf[4];
        std::snprintf(buf, sizeof(buf), "%%%02X", c);
        enc += buf;
      }
    }
    q += (q.empty() ? "?" : "&") + k + "=" + enc;
  }
  return q;
}

// guardian report --html FILE: what the page shows comes from the API (incidents with their
// steps, /v1/mttr, the stored chaos runs); the page is rendered here and written atomically.
int WriteReport(const ApiClient& api, const std::string& path, int limit, int64_t since) {
  guardian::ReportInput in;
  ApiReply reply;
  int rc = 0;
  std::string s = since ? std::to_string(since) : "";
  if ((rc = Call(api, "GET", "/v1/status", nullptr, &reply))) return rc;
  in.version = Str(reply.json, "version");
  std::string q = QueryString({{"limit", std::to_string(limit)}, {"since", s}});
  if ((rc = Call(api, "GET", "/v1/incidents" + q, nullptr, &reply))) return rc;
  in.incidents = reply.json["incidents"];
  if ((rc = Call(api, "GET", "/v1/mttr" + QueryString({{"since", s}}), nullptr, &reply))) return rc;
  in.mttr = reply.json;
  if ((rc = Call(api, "GET", "/v1/chaos-runs?limit=100", nullptr, &reply))) return rc;
  in.chaos_runs = reply.json["runs"];
  in.generated_at_ms = guardian::SystemClock::Get()->WallMs();
  Status w = guardian::WriteFileAtomic(path, guardian::RenderReportHtml(in));
  if (!w.ok()) {
    std::cerr << "guardian: " << w.message() << "\n";
    return kExitError;
  }
  std::printf("wrote %s: %zu incidents, %zu modes, %zu chaos runs\n", path.c_str(),
              in.incidents.size(), in.mttr.value("modes", json::array()).size(),
              in.chaos_runs.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"guardian: operate the Guardian watchdog"};
  app.require_subcommand(1);
  std::string config, state_dir, socket, url;
  app.add_option("--socket", socket,
                 "the daemon's API socket (default: from --config, "
                 "GUARDIAN_SOCKET, or STATE_DIR/guardian.sock)");
  app.add_option("--url", url, "the daemon's API over TCP, e.g. http://127.0.0.1:9731");
  app.add_option("--config", config, "the daemon's config file (to find its socket)");
  app.add_option("--state-dir", state_dir, "the daemon's state dir (to find its socket)");
  bool offline = false;
  app.add_flag("--offline", offline,
               "incidents, incident, mttr: read the store directly (read-only; the daemon may "
               "be down) from --state-dir, --config's state_dir or GUARDIAN_STATE_DIR");

  bool as_json = false;
  auto* status_cmd = app.add_subcommand("status", "checks, holds, incidents and daemon health");
  status_cmd->add_flag("--json", as_json, "print JSON");

  std::string f_check, f_mode, f_state;
  int64_t f_since = 0;
  int f_limit = 0;
  auto* incidents_cmd = app.add_subcommand("incidents", "list incidents, newest first");
  incidents_cmd->add_flag("--json", as_json, "print JSON");
  incidents_cmd->add_option("--check", f_check, "only this check");
  incidents_cmd->add_option("--mode", f_mode, "only this mode");
  incidents_cmd->add_option("--state", f_state, "only this state");
  incidents_cmd->add_option("--since", f_since, "onset at or after (ms since epoch)");
  incidents_cmd->add_option("--limit", f_limit, "at most this many (default 100)")
      ->check(CLI::Range(1, 10000));

  int64_t incident_id = 0;
  auto* incident_cmd = app.add_subcommand("incident", "one incident with its steps");
  incident_cmd->add_option("ID", incident_id, "incident id")->required();
  incident_cmd->add_flag("--json", as_json, "print JSON");

  int64_t mttr_since = 0;
  auto* mttr_cmd = app.add_subcommand("mttr", "per-mode MTTD/MTTR against target");
  mttr_cmd->add_flag("--json", as_json, "print JSON");
  mttr_cmd->add_option("--since", mttr_since, "incidents with onset at or after (ms since epoch)");

  std::string report_html;
  int report_limit = 500;
  auto* report_cmd =
      app.add_subcommand("report",
                         "write the MTTR report: per-mode charts, incident timelines, "
                         "the chaos-run trend (one self-contained HTML page)");
  report_cmd->add_option("--html", report_html, "the HTML file to write")->required();
  report_cmd->add_option("--since", mttr_since,
                         "incidents with onset at or after (ms since epoch)");
  report_cmd->add_option("--limit", report_limit, "at most this many incidents (default 500)")
      ->check(CLI::Range(1, 10000));

  std::string check, reason;
  auto* hold_cmd = app.add_subcommand("hold", "stop Guardian acting on a check");
  hold_cmd->add_option("CHECK", check)->required();
  hold_cmd->add_option("--reason", reason, "why (recorded in the audit trail)")->required();
  hold_cmd->add_flag("--json", as_json, "print JSON");

  auto* release_cmd = app.add_subcommand("release", "let Guardian act on a held check again");
  release_cmd->add_option("CHECK", check)->required();
  release_cmd->add_flag("--json", as_json, "print JSON");

  bool dry_run = false, force = false;
  auto* run_cmd = app.add_subcommand(
      "run",
      "probe a check now and run its playbook if it fails (--dry-run: show what it would do)");
  run_cmd->add_option("CHECK", check)->required();
  run_cmd->add_flag("--dry-run", dry_run, "record what the playbook would do; change nothing");
  run_cmd->add_flag("--force", force, "run the playbook even if the check is healthy");
  run_cmd->add_flag("--json", as_json, "print JSON");

  auto* reload_cmd = app.add_subcommand("reload", "reload the daemon's config and playbooks");
  reload_cmd->add_flag("--json", as_json, "print JSON");

  auto* metrics_cmd = app.add_subcommand("metrics", "print the Prometheus metrics");

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

  auto* fleet_cmd = app.add_subcommand("fleet", "fleet mode (docs/fleet.md)");
  fleet_cmd->require_subcommand(1);
  auto* fleet_status_cmd = fleet_cmd->add_subcommand(
      "status", "the leader and its epoch, each host's heartbeat and incidents, budget use");
  fleet_status_cmd->add_flag("--json", as_json, "print JSON");

  auto* audit_cmd =
      app.add_subcommand("audit", "the audit trail of what Guardian and operators did");
  audit_cmd->require_subcommand(1);
  auto* verify_cmd = audit_cmd->add_subcommand(
      "verify", "check the audit trail's hash chain; name the first row that does not fit");
  verify_cmd->add_flag("--json", as_json, "print JSON");

  CLI11_PARSE(app, argc, argv);

  if (*check_cmd) return guardian::CheckConfigCommand(check_file);
  if (*lint_cmd) {
    int bad = 0;
    for (const auto& f : lint_files) {
      guardian::PlaybookInfo info;
      Status s = guardian::PlaybookLibrary::Inspect(f, guardian::PlaybookLimits{}, &info);
      if (s.ok()) {
        std::cout << f << ": ok (" << info.name << ", mode " << info.ModesText() << ")\n";
      } else {
        std::cerr << s.message() << "\n";
        ++bad;
      }
    }
    return bad ? 2 : 0;
  }

  if (*verify_cmd) return VerifyAuditCommand(config, state_dir, as_json);

  if (offline) {
    if (!*incidents_cmd && !*incident_cmd && !*mttr_cmd) {
      std::cerr << "guardian: --offline works with incidents, incident and mttr only\n";
      return kExitError;
    }
    std::map<std::string, std::string> query;
    for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
             {"check", f_check},
             {"mode", f_mode},
             {"state", f_state},
             {"since", f_since ? std::to_string(f_since) : ""},
             {"limit", f_limit ? std::to_string(f_limit) : ""}}) {
      if (!v.empty()) query[k] = v;
    }
    if (*mttr_cmd && mttr_since) query = {{"since", std::to_string(mttr_since)}};
    json out;
    std::string what = *incidents_cmd ? "incidents" : *incident_cmd ? "incident" : "mttr";
    int orc = ReadOffline(config, state_dir, what, query, incident_id, &out);
    if (orc != 0) return orc;
    if (as_json) {
      PrintJson(out);
    } else if (what == "incidents") {
      PrintIncidentTable(out);
    } else if (what == "incident") {
      PrintIncident(out);
    } else {
      PrintMttr(out);
    }
    return 0;
  }

  Target target;
  if (!FindDaemon(url, socket, config, state_dir, &target)) return 2;
  // A dry run may take every phase's deadline (4 x phase_timeout_ms, 2 min by default).
  ApiClient api(target.socket, target.url, *run_cmd ? 300'000 : 60'000);
  ApiReply reply;
  int rc = 0;

  if (*status_cmd) {
    if ((rc = Call(api, "GET", "/v1/status", nullptr, &reply))) return rc;
    as_json ? PrintJson(reply.json) : PrintStatus(reply.json);
  } else if (*fleet_status_cmd) {
    if ((rc = Call(api, "GET", "/v1/fleet", nullptr, &reply))) return rc;
    as_json ? PrintJson(reply.json) : PrintFleet(reply.json);
  } else if (*incidents_cmd) {
    std::string q = QueryString({{"check", f_check},
                                 {"mode", f_mode},
                                 {"state", f_state},
                                 {"since", f_since ? std::to_string(f_since) : ""},
                                 {"limit", f_limit ? std::to_string(f_limit) : ""}});
    if ((rc = Call(api, "GET", "/v1/incidents" + q, nullptr, &reply))) return rc;
    const json& list = reply.json["incidents"];
    as_json ? PrintJson(list) : PrintIncidentTable(list);
  } else if (*incident_cmd) {
    if ((rc = Call(api, "GET", "/v1/incidents/" + std::to_string(incident_id), nullptr, &reply)))
      return rc;
    as_json ? PrintJson(reply.json) : PrintIncident(reply.json);
  } else if (*mttr_cmd) {
    std::string q = QueryString({{"since", mttr_since ? std::to_string(mttr_since) : ""}});
    if ((rc = Call(api, "GET", "/v1/mttr" + q, nullptr, &reply))) return rc;
    as_json ? PrintJson(reply.json) : PrintMttr(reply.json);
  } else if (*report_cmd) {
    return WriteReport(api, report_html, report_limit, mttr_since);
  } else if (*hold_cmd) {
    if ((rc = Call(api, "POST", "/v1/checks/" + check + "/hold", {{"reason", reason}}, &reply)))
      return rc;
    as_json ? PrintJson(reply.json)
            : (void)std::printf("check %s held: %s\n", check.c_str(), reason.c_str());
  } else if (*release_cmd) {
    if ((rc = Call(api, "POST", "/v1/checks/" + check + "/release", json::object(), &reply)))
      return rc;
    as_json ? PrintJson(reply.json) : (void)std::printf("check %s released\n", check.c_str());
  } else if (*run_cmd) {
    json body = {{"dry_run", dry_run}, {"force", force}};
    if ((rc = Call(api, "POST", "/v1/checks/" + check + "/run", body, &reply))) return rc;
    as_json ? PrintJson(reply.json) : PrintRun(reply.json);
  } else if (*reload_cmd) {
    if ((rc = Call(api, "POST", "/v1/reload", json::object(), &reply))) return rc;
    as_json ? PrintJson(reply.json)
            : (void)std::printf("reloaded: %s checks\n", Str(reply.json, "checks").c_str());
  } else if (*metrics_cmd) {
    if ((rc = Call(api, "GET", "/metrics", nullptr, &reply))) return rc;
    std::cout << reply.body;
  }
  return 0;
}
