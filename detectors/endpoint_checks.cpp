// http and tcp: does an endpoint answer? `http` GETs a URL (an answer under 400 within
// `timeout_ms` passes); `tcp` connects to a numeric address and port. No event tells that a
// server hangs, so both are probed on their interval, which may be well under a second: a
// probe never blocks the loop, and a hang is judged `timeout_ms` after the first probe it meets.
// Their playbook (`exec`) runs the check's `on_fail` command; without one the check only alerts.
#include <memory>

#include "daemon/endpoint_probe.h"
#include "detectors/detector.h"

namespace guardian {
namespace {

class EndpointDetector : public Detector {
 public:
  EndpointDetector(const DetectorEnv& env, Endpoint e)
      : probe_(std::make_unique<EndpointProbe>(env.loop, env.http, std::move(e))) {}

  void Close(std::function<void()> closed) override {
    probe_.reset();  // cancels what is in flight
    closed();
  }

  void Probe(std::function<void(Observation)> done) override {
    if (!probe_) return done(Observation::Unknown("check closed"));
    std::string where = probe_->endpoint().Describe();
    probe_->Run([where, done](EndpointAnswer a) {
      done(a.ok ? Observation::Ok(where + " " + a.what)
                : Observation::Failing(where + ": " + a.what));
    });
  }

 private:
  std::unique_ptr<EndpointProbe> probe_;
};

}  // namespace

GUARDIAN_REGISTER_DETECTOR(
    http,
    DetectorFactory{"http",
                    WithRemedyParams({
                        {"url", ParamType::kString, true, "http:// or https:// URL to GET"},
                        {"timeout_ms", ParamType::kInt, false, "the whole request (default 1000)"},
                    }),
                    [](const DetectorEnv& env) {
                      Endpoint e;
                      e.url = ParamString(env.check.params, "url");
                      e.timeout_ms = ParamInt(env.check.params, "timeout_ms", 1000);
                      return std::make_shared<EndpointDetector>(env, e);
                    }});

GUARDIAN_REGISTER_DETECTOR(
    tcp,
    DetectorFactory{"tcp",
                    WithRemedyParams({
                        {"host", ParamType::kString, false, "numeric address (default 127.0.0.1)"},
                        {"port", ParamType::kInt, true, "TCP port that must accept a connection"},
                        {"timeout_ms", ParamType::kInt, false, "the connect (default 1000)"},
                    }),
                    [](const DetectorEnv& env) {
                      Endpoint e;
                      e.host = ParamString(env.check.params, "host", "127.0.0.1");
                      e.port = static_cast<int>(ParamInt(env.check.params, "port", 0));
                      e.timeout_ms = ParamInt(env.check.params, "timeout_ms", 1000);
                      return std::make_shared<EndpointDetector>(env, e);
                    }});

}  // namespace guardian
