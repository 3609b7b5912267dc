// api_timeout: an upstream API a supervised service calls is too slow or failing. Which endpoint
// is in use is the service's flags' active_upstream; the circuit breaker is open while that is
// the backup. The detector probes the primary on every interval (HttpClient, on the loop) and
// reads what the service itself reports of its calls (its status file's `upstreams`, which
// also wakes a probe the moment the service meets a failure).
//   breaker closed: failing when a probe of the primary takes longer than latency_limit_ms (or
//     gets no answer, or a 5xx) `failures` times in a row, or at once when it times out, or when
//     the service reports `failures` consecutive failures of its calls to the primary.
//   breaker open (half-open retries): failing when the primary has answered well `close_after`
//     probes in a row (time to close the breaker), or when the service reports the backup
//     failing `failures` times in a row too.
#include <nlohmann/json.hpp>

#include "daemon/file_util.h"
#include "daemon/fs_watch.h"
#include "daemon/http_client.h"
#include "daemon/work.h"
#include "detectors/detector.h"

namespace guardian {
namespace {

struct AppView {
  std::string active = "primary";
  int64_t primary_failures = 0;  // consecutive, as the service reports them
  int64_t backup_failures = 0;
  std::string primary_error;
  std::string backup_error;
};

class ApiTimeoutDetector : public Detector {
 public:
  explicit ApiTimeoutDetector(const DetectorEnv& env) : env_(env) {
    const Params& p = env.check.params;
    primary_ = ParamString(p, "primary");
    backup_ = ParamString(p, "backup");
    path_ = ParamString(p, "probe_path", "/healthz");
    limit_ms_ = ParamInt(p, "latency_limit_ms", 2000);
    failures_ = ParamInt(p, "failures", 3);
    close_after_ = ParamInt(p, "close_after", 2);
  }

  Status Start(std::function<void()> wake) override {
    return WatchServiceStatus(env_, std::move(wake), &watch_);
  }

  void Close(std::function<void()> closed) override {
    watch_.reset();  // a probe in flight ends by its own deadline
    closed();
  }

  void Probe(std::function<void(Observation)> done) override {
    if (!env_.http) return done(Observation::Unknown("no HTTP client in this daemon"));
    auto view = std::make_shared<AppView>();
    std::string flags_file = env_.service ? env_.service->flags_file : "";
    std::string status_file = env_.service ? env_.service->status_file : "";
    QueueWork(
        env_.loop,
        [view, flags_file, status_file] { ReadApp(flags_file, status_file, view.get()); },
        [this, weak = weak_from_this(), view, done] {
          if (weak.expired()) return done(Observation::Unknown("check closed"));
          ProbePrimary(*view, done);
        });
  }

 private:
  static void ReadApp(const std::string& flags_file, const std::string& status_file, AppView* v) {
    nlohmann::json doc;
    if (!flags_file.empty() && ReadJsonObject(flags_file, 1 << 20, &doc).ok())
      v->active = doc.value("active_upstream", std::string("primary"));
    if (status_file.empty() || !ReadJsonObject(status_file, 1 << 20, &doc).ok()) return;
    if (!doc.contains("upstreams") || !doc["upstreams"].is_object()) return;
    for (const char* name : {"primary", "backup"}) {
      const auto& u = doc["upstreams"].value(name, nlohmann::json::object());
      int64_t n = u.value("consecutive_failures", int64_t{0});
      std::string err;
      if (u.contains("last_error") && u["last_error"].is_object())
        err = u["last_error"].value("kind", "") + " " + u["last_error"].value("message", "");
      (std::string(name) == "primary" ? v->primary_failures : v->backup_failures) = n;
      (std::string(name) == "primary" ? v->primary_error : v->backup_error) = err;
    }
  }

  void ProbePrimary(const AppView& view, std::function<void(Observation)> done) {
    HttpCall call;
    call.url = primary_ + path_;
    call.timeout_ms = limit_ms_;
    env_.http->Start(call, [this, weak = weak_from_this(), view, done](HttpResult r) {
      if (weak.expired()) return done(Observation::Unknown("check closed"));
      done(Judge(view, r));
    });
  }

  Observation Judge(const AppView& app, const HttpResult& r) {
    Observation o = JudgeBreaker(app, r);
    o.degraded = o.ok() && app.active == "backup";
    o.gauges = {{"breaker_open", app.active == "backup" ? 1 : 0},
                {"primary_failures_in_a_row", static_cast<double>(bad_streak_)},
                {"primary_good_in_a_row", static_cast<double>(good_streak_)},
                {"primary_probe_ms", static_cast<double>(r.total_ms)}};
    return o;
  }

  Observation JudgeBreaker(const AppView& app, const HttpResult& r) {
    bool answered = r.ok() && r.code < 500;
    bool slow = answered && r.total_ms > limit_ms_;
    bool good = answered && !slow;
    std::string probe =
        good ? "answered " + std::to_string(r.code) + " in " + std::to_string(r.total_ms) + " ms"
        : !r.ok() ? r.error_kind + " (" + r.error + ")"
        : slow    ? "answered in " + std::to_string(r.total_ms) + " ms, over " +
                     std::to_string(limit_ms_) + " ms"
               : "answered " + std::to_string(r.code);
    // A refusal from a server Guardian is still starting says nothing about the API yet.
    if (!good && app.active != "backup") {
      if (std::string svc = ServiceStartingAt(env_, primary_); !svc.empty())
        return Observation::Unknown("primary " + primary_ + path_ + " " + probe +
                                    "; its service '" + svc + "' is still starting");
    }
    bad_streak_ = good ? 0 : bad_streak_ + 1;
    good_streak_ = good ? good_streak_ + 1 : 0;
    std::string primary = "primary " + primary_ + path_ + " " + probe;

    if (app.active == "backup") {
      if (app.backup_failures >= failures_)
        return Observation::Failing("breaker open, and the service reports the backup failing " +
                                    std::to_string(app.backup_failures) + " times in a row (" +
                                    app.backup_error + "); " + primary);
      if (good_streak_ >= close_after_)
        return Observation::Failing("breaker open, and the " + primary + ", " +
                                    std::to_string(good_streak_) +
                                    " probes in a row: time to close it");
      return Observation::Ok("breaker open: routed to the backup; half-open probe of the " +
                             primary);
    }
    if (!r.ok() && r.error_kind == "timeout")
      return Observation::Failing(primary + ", the limit is " + std::to_string(limit_ms_) + " ms");
    if (bad_streak_ >= failures_)
      return Observation::Failing(primary + ", " + std::to_string(bad_streak_) +
                                  " probes in a row");
    if (app.primary_failures >= failures_)
      return Observation::Failing("the service reports " + std::to_string(app.primary_failures) +
                                  " failed calls to the primary in a row (" + app.primary_error +
                                  "); " + primary);
    if (!good)
      return Observation::Ok("breaker closed; " + primary + " (" + std::to_string(bad_streak_) +
                             " of " + std::to_string(failures_) + " before it opens)");
    return Observation::Ok("breaker closed; " + primary);
  }

  DetectorEnv env_;
  std::string primary_, backup_, path_;
  int64_t limit_ms_, failures_, close_after_;
  int64_t bad_streak_ = 0, good_streak_ = 0;
  std::unique_ptr<FsWatch> watch_;
};

}  // namespace

GUARDIAN_REGISTER_DETECTOR(
    api_timeout,
    DetectorFactory{
        "api_timeout",
        {
            {"service", ParamType::kString, true,
             "the supervised service that calls the API (its flags route it, its status file "
             "reports its calls)"},
            {"primary", ParamType::kString, true, "the primary endpoint's base URL"},
            {"backup", ParamType::kString, true, "the backup endpoint's base URL"},
            {"probe_path", ParamType::kString, false,
             "path probed under each base URL (default /healthz)"},
            {"latency_limit_ms", ParamType::kInt, false,
             "a slower answer counts as a failure; no answer by then is a timeout (default 2000)"},
            {"failures", ParamType::kInt, false,
             "failures in a row that open the breaker (default 3)"},
            {"close_after", ParamType::kInt, false,
             "good half-open probes in a row that close it again (default 2)"},
        },
        [](const DetectorEnv& env) -> std::shared_ptr<Detector> {
          return std::make_shared<ApiTimeoutDetector>(env);
        },
    });

}  // namespace guardian
