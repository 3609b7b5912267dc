// model_server_down: a model server speaking Ollama's HTTP API refuses, errors, hangs or is too
// slow to answer a one-token generate. Each probe calls GET /api/version (timeout_ms); every
// generate_every_ms, and at once when the service using the model reports failed calls, it also
// asks for a one-token POST /api/generate of `model` (generate_deadline_ms):
//   failing: version refused, timed out or not 200; the generate failed, answered an error
//     (Ollama's {"error": ...}) or missed its deadline; or the server answers well again while
//     the feature the playbook degraded is still off (time to re-enable it, reported as new
//     input so an escalated hold lifts at once).
//   unknown: refused while the supervised server (params.server) is still starting.
// The using service's status file (its `model` calls) wakes a probe when it changes.
#include <nlohmann/json.hpp>

#include "daemon/file_util.h"
#include "daemon/fs_watch.h"
#include "daemon/http_client.h"
#include "daemon/supervisor.h"
#include "daemon/work.h"
#include "detectors/detector.h"

namespace guardian {
namespace {

struct AppView {
  bool degraded_by_us = false;
  int64_t consecutive_failures = 0;  // the service's own calls to the model server
};

class ModelServerDownDetector : public Detector {
 public:
  explicit ModelServerDownDetector(const DetectorEnv& env) : env_(env) {
    const Params& p = env.check.params;
    url_ = ParamString(p, "url");
    while (!url_.empty() && url_.back() == '/') url_.pop_back();
    model_ = ParamString(p, "model");
    timeout_ms_ = ParamInt(p, "timeout_ms", 2000);
    generate_deadline_ms_ = ParamInt(p, "generate_deadline_ms", 5000);
    generate_every_ms_ = ParamInt(p, "generate_every_ms", 10000);
    feature_ = ParamString(p, "feature", "model");
    server_ = ParamString(p, "server");
  }

  Status Start(std::function<void()> wake) override {
    return WatchServiceStatus(env_, std::move(wake), &watch_);
  }

  void Close(std::function<void()> closed) override {
    watch_.reset();
    closed();
  }

  void Probe(std::function<void(Observation)> done) override {
    if (!env_.http) return done(Observation::Unknown("no HTTP client in this daemon"));
    auto view = std::make_shared<AppView>();
    std::string dir = env_.check_state_dir, feature = feature_;
    std::string flags_file = env_.service ? env_.service->flags_file : "";
    std::string status_file = env_.service ? env_.service->status_file : "";
    QueueWork(
        env_.loop,
        [=] {
          view->degraded_by_us = ReadDegraded(dir, flags_file, feature).by_this_check;
          nlohmann::json doc;
          if (!status_file.empty() && ReadJsonObject(status_file, 1 << 20, &doc).ok()) {
            const auto& m = doc.value("model", nlohmann::json::object());
            if (m.is_object()) view->consecutive_failures = m.value("consecutive_failures", 0);
          }
        },
        [this, weak = weak_from_this(), view, done] {
          if (weak.expired()) return done(Observation::Unknown("check closed"));
          ProbeVersion(view, done);
        });
  }

 private:
  // params.server when Guardian is starting it now (a server off loopback has no port to match).
  std::string ServerComingUp() const {
    if (server_.empty() || env_.supervisor == nullptr) return "";
    Service* svc = env_.supervisor->Find(server_);
    return svc != nullptr && svc->coming_up() ? server_ : "";
  }

  void ProbeVersion(std::shared_ptr<AppView> view, std::function<void(Observation)> done) {
    HttpCall call;
    call.url = url_ + "/api/version";
    call.timeout_ms = timeout_ms_;
    env_.http->Start(call, [this, weak = weak_from_this(), view, done](HttpResult r) {
      if (weak.expired()) return done(Observation::Unknown("check closed"));
      gauges_["version_ms"] = static_cast<double>(r.total_ms);
      if (!r.ok() || r.code != 200) {
        std::string what = url_ + "/api/version " +
                           (r.ok() ? "answered " + std::to_string(r.code) + Quote(r.body)
                                   : r.error_kind + " after " + std::to_string(r.total_ms) + " ms");
        if (!r.ok()) {
          // The server named by params.server, or the one serving the URL's loopback port.
          std::string svc = ServerComingUp();
          if (svc.empty()) svc = ServiceStartingAt(env_, url_);
          if (!svc.empty())
            return Finish(
                *view, Observation::Unknown(what + "; its service '" + svc + "' is still starting"),
                done);
        }
        return Finish(*view, Observation::Failing(what), done);
      }
      int64_t now = static_cast<int64_t>(uv_now(env_.loop));
      bool due = last_generate_ < 0 || now - last_generate_ >= generate_every_ms_ ||
                 view->consecutive_failures > 0 || !last_good_ || view->degraded_by_us;
      if (!due)
        return Finish(*view, Observation::Ok("version in " + std::to_string(r.total_ms) + " ms"),
                      done);
      last_generate_ = now;
      ProbeGenerate(view, done);
    });
  }

  void ProbeGenerate(std::shared_ptr<AppView> view, std::function<void(Observation)> done) {
    HttpCall call;
    call.method = "POST";
    call.url = url_ + "/api/generate";
    call.headers = {"Content-Type: application/json"};
    call.body = nlohmann::json{{"model", model_},
                               {"prompt", "Say ok."},
                               {"stream", false},
                               {"options", {{"num_predict", 1}}}}
                    .dump();
    call.timeout_ms = generate_deadline_ms_;
    env_.http->Start(call, [this, weak = weak_from_this(), view, done](HttpResult r) {
      if (weak.expired()) return done(Observation::Unknown("check closed"));
      gauges_["generate_ms"] = static_cast<double>(r.total_ms);
      std::string what = "a one-token generate of " + model_;
      if (!r.ok())
        return Finish(*view,
                      Observation::Failing(what + ": " + r.error_kind + " after " +
                                           std::to_string(r.total_ms) + " ms (deadline " +
                                           std::to_string(generate_deadline_ms_) + " ms)"),
                      done);
      if (r.code != 200)
        return Finish(
            *view,
            Observation::Failing(what + " answered " + std::to_string(r.code) + Quote(r.body)),
            done);
      Finish(*view, Observation::Ok(what + " answered in " + std::to_string(r.total_ms) + " ms"),
             done);
    });
  }

  // Ollama's {"error": "..."} of an error answer, as ": ..." (at most 200 bytes), else "".
  static std::string Quote(const std::string& body) {
    nlohmann::json doc = nlohmann::json::parse(body, nullptr, false);
    if (!doc.is_object() || !doc.contains("error") || !doc["error"].is_string()) return "";
    return ": " + doc["error"].get<std::string>().substr(0, 200);
  }

  void Finish(const AppView& view, Observation o, const std::function<void(Observation)>& done) {
    bool was_good = std::exchange(last_good_, o.ok());
    if (o.ok() && view.degraded_by_us) {
      o = Observation::Failing("the model server answers well again (" + o.evidence + "), but '" +
                               feature_ + "' is still degraded");
      if (!was_good) o.new_input = "the model server answers again";
    }
    o.gauges = gauges_;
    o.gauges["degraded"] = view.degraded_by_us ? 1 : 0;
    done(std::move(o));
  }

  DetectorEnv env_;
  std::string url_, model_, feature_, server_;
  int64_t timeout_ms_, generate_deadline_ms_, generate_every_ms_;
  int64_t last_generate_ = -1;  // loop ms of the last generate probe
  bool last_good_ = false;
  std::map<std::string, double> gauges_;
  std::unique_ptr<FsWatch> watch_;
};

}  // namespace

GUARDIAN_REGISTER_DETECTOR(
    model_server_down,
    DetectorFactory{
        "model_server_down",
        {
            {"url", ParamType::kString, true, "the model server's base URL (Ollama's API)"},
            {"model", ParamType::kString, true, "the model a one-token generate asks for"},
            {"server", ParamType::kString, false,
             "the supervised service that runs the model server (the playbook restarts it)"},
            {"service", ParamType::kString, false,
             "the supervised service that uses the model (its status file wakes probes, its "
             "flags degrade the feature)"},
            {"timeout_ms", ParamType::kInt, false, "deadline of GET /api/version (default 2000)"},
            {"generate_deadline_ms", ParamType::kInt, false,
             "deadline of the one-token generate (default 5000)"},
            {"generate_every_ms", ParamType::kInt, false,
             "how often a healthy server is asked for a generate (default 10000)"},
            {"ready_timeout_ms", ParamType::kInt, false,
             "playbook: how long a started server has to list the model and generate (default "
             "10000)"},
            {"feature", ParamType::kString, false,
             "the feature degraded while no server answers (default model)"},
        },
        [](const DetectorEnv& env) -> std::shared_ptr<Detector> {
          return std::make_shared<ModelServerDownDetector>(env);
        },
    });

}  // namespace guardian
