#pragma once
// Api: the operator API's routes (docs/api.md). It turns an HttpRequest into a call on the
// daemon (through ApiBackend) and the result into JSON, with a status code and a message for
// every error. Routing and parameter checks are plain functions, so they are testable without
// a loop; answers that need the store come back asynchronously through the Responder.
//
// Thread: loop thread only.

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "daemon/config.h"
#include "daemon/http_server.h"
#include "daemon/status.h"
#include "daemon/store.h"

namespace guardian {

// What the API may ask of the daemon. Every callback runs on the loop thread.
struct ApiBackend {
  std::function<nlohmann::json()> health;
  std::function<nlohmann::json()> status;
  std::function<std::string()> metrics;
  // Runs `work` on the store thread and `done` back on the loop.
  std::function<void(std::function<Status(Store&)> work, std::function<void(Status)> done)> store;
  std::function<Status(const std::string& check, const std::string& reason)> hold;
  std::function<Status(const std::string& check)> release;
  // `done` gets the result JSON (null on error).
  std::function<void(const std::string& check, bool dry_run, bool force,
                     std::function<void(Status, nlohmann::json)> done)>
      run;
  std::function<void(std::function<void(Status, nlohmann::json)> done)> reload;
  // GET /v1/fleet (docs/fleet.md): NotFound without a `fleet:` section.
  std::function<void(std::function<void(Status, nlohmann::json)> done)> fleet;
  // MTTR targets per mode, for /v1/mttr rows with no incidents yet.
  std::function<std::map<std::string, int64_t>()> targets;
  std::function<int64_t()> now_ms;  // wall clock (chaos runs' stored_at)
  // Test builds only (GUARDIAN_TEST_HOOKS): stalls the loop or the store thread for `ms`, so
  // tests can see the watchdog withhold its pings. Empty otherwise: the route is a 404.
  std::function<Status(const std::string& where, int64_t ms)> debug_stall;
  // Test builds only: sets the store's fault plan (daemon/fault_vfs.h); `out` says what the
  // seam has seen. Empty otherwise: the route is a 404.
  std::function<Status(const std::string& fault, int64_t after, int64_t count, nlohmann::json* out)>
      debug_store_fault;
};

// One snapshot answer (status, metrics) reused by the other requests of the same server pass
// (HttpRequest::pass): under load many clients ask at once, and one build serves them all.
class PassCache {
 public:
  // The cached answer if it was built in `pass` and not invalidated since; else builds it.
  const HttpResponse& Get(uint64_t pass, const std::function<HttpResponse()>& build);
  // After anything that may change what the answer says.
  void Invalidate() { valid_ = false; }

 private:
  bool valid_ = false;
  uint64_t pass_ = 0;
  HttpResponse response_;
};

class Api {
 public:
  explicit Api(ApiBackend backend) : backend_(std::move(backend)) {}
  void Handle(const HttpRequest& req, Responder respond);

 private:
  // Fills the answer on the store thread with `build`, then sends it (500 if the store failed).
  void AnswerFromStore(std::function<Status(Store&, HttpResponse*)> build, Responder respond);

  ApiBackend backend_;
  // Any request that may change state (every POST) invalidates both.
  PassCache status_cache_, metrics_cache_;
};

// HTTP status for a Status code: 400 invalid, 404 not found, 409 busy (held, observe mode, an
// open incident), 503 aborted, 500 otherwise.
int HttpStatusFor(const Status& s);

// Parses /v1/incidents query parameters; an unknown or malformed one is an error naming it.
Status ParseIncidentFilter(const std::map<std::string, std::string>& query, IncidentFilter* filter);

// The format of chaos/run's JSON document (docs/chaos.md), which POST /v1/chaos-runs takes.
inline constexpr const char* kChaosRunFormat = "guardian-chaos-run/1";

// A chaos run's summary (POST /v1/chaos-runs) as a record to store; false with why on a field
// that is unknown, missing or of the wrong type.
bool ParseChaosRun(const nlohmann::json& body, ChaosRunRecord* run, std::string* why);

// Each configured mode's MTTR target: the tightest of its checks'.
std::map<std::string, int64_t> MttrTargets(const Config& config);

// Per-mode MTTR/MTTD statistics (count, p50, p95, max, target, over_target) from resolved
// incidents. Modes with a target but no incidents are listed with count 0.
nlohmann::json MttrReport(const std::vector<RecoveryTime>& times,
                          const std::map<std::string, int64_t>& targets);

}  // namespace guardian
