// http and tcp: does an endpoint answer? `http` GETs a URL (an answer under 400 within
// `timeout_ms` passes); `tcp` connects to a numeric address and port. No event tells that a
// server hangs, so both are probed on their interval, which may be well under a second: a
// probe never blocks the loop, and a hang is judged `timeout_ms` after the first probe it meets.
// A `tcp` check of a port on this host may use `method: listen` instead: the kernel completes a
// connect to a listening socket with room in its accept queue by itself, so its socket table
// (one sock_diag dump shared by every such check) gives the connect's answer without the
// handshake. Their playbook (`exec`) runs the check's `on_fail` command; without one the check only
// alerts.
#include <algorithm>
#include <memory>

#include "daemon/endpoint_probe.h"
#include "daemon/listen_table.h"
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

// `tcp` with `method: listen`: the port is judged from this host's listening sockets (shared
// ListenTable) instead of a connect; same answer for a local port, no handshake.
class ListenDetector : public Detector {
 public:
  ListenDetector(const DetectorEnv& env, const Endpoint& e)
      : table_(env.listen_table),
        where_(e.Describe()),
        target_(ParseListenTarget(e.host, e.port)),
        // Probes of many checks within a tenth of their interval (at most 100 ms) share a dump.
        max_age_ms_(std::min<int64_t>(100, env.check.interval_ms / 10)) {}

  void Probe(std::function<void(Observation)> done) override {
    if (!table_) return done(Observation::Unknown("no listening-socket table in this daemon"));
    table_->Query(max_age_ms_, [self = weak_from_this(), done](const Status& s,
                                                               const std::vector<Listener>& table) {
      auto me = std::static_pointer_cast<ListenDetector>(self.lock());
      if (!me) return;
      if (!s.ok())
        return done(Observation::Unknown(me->where_ + ": cannot read sockets: " + s.message()));
      ListenVerdict v = JudgeListen(table, me->target_);
      done(v.ok ? Observation::Ok(me->where_ + " " + v.what)
                : Observation::Failing(me->where_ + ": " + v.what));
    });
  }

 private:
  ListenTable* table_;
  std::string where_;  // "127.0.0.1:8080", for the evidence
  ListenTarget target_;
  int64_t max_age_ms_;
};

}  // namespace

GUARDIAN_REGISTER_DETECTOR(
    http,
    DetectorFactory{"http",
                    WithRemedyParams({
                        {"url", ParamType::kString, true, "http:// or https:// URL to GET"},
                        {"timeout_ms", ParamType::kInt, false, "the whole request (default 1000)"},
                        {"headers", ParamType::kHeaders, false,
                         "HTTP headers sent with the GET (a value may be a secret reference)"},
                    }),
                    [](const DetectorEnv& env) {
                      Endpoint e;
                      e.url = ParamString(env.check.params, "url");
                      for (const auto& [name, value] : ParamMap(env.check.params, "headers"))
                        e.headers.push_back(name + ": " + value);
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
                        {"method",
                         ParamType::kString,
                         false,
                         "connect (default), or listen: read this host's listening sockets",
                         {"connect", "listen"}},
                    }),
                    [](const DetectorEnv& env) -> std::shared_ptr<Detector> {
                      Endpoint e;
                      e.host = ParamString(env.check.params, "host", "127.0.0.1");
                      e.port = static_cast<int>(ParamInt(env.check.params, "port", 0));
                      e.timeout_ms = ParamInt(env.check.params, "timeout_ms", 1000);
                      if (ParamString(env.check.params, "method", "connect") == "listen")
                        return std::make_shared<ListenDetector>(env, e);
                      return std::make_shared<EndpointDetector>(env, e);
                    }});

}  // namespace guardian
