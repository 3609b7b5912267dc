// network_unreachable: the network the stack depends on is down, as opposed to one upstream
// being down. A link, address or route change (rtnetlink) wakes a probe at once. Each probe checks
// every configured target ("host:port") on the loop: the name through DnsResolver (c-ares, the
// configured dns_servers), then a TCP connect (TcpProbe). A target is cut off when its lookup times
// out or is refused, or its connect is unreachable or times out; a refused connect (an RST) means
// the network works and only that service is down.
//   failing: every target is cut off ("network down"), or the network is back (every target
//     reachable) while the service is still in the offline mode this check's playbook turned on
//     (reported as new input, so an escalated hold lifts at once).
//   ok: at least one target reachable (a few down is another check's problem: named in the
//     evidence); or offline mode on and the network still down: then the targets are only
//     probed on the backoff schedule (offline_probe_ms, 10 s, 30 s, 60 s ...), and the probes in
//     between report the last verdict.
#include <arpa/inet.h>

#include <cstdlib>
#include <utility>

#include "daemon/dns_resolver.h"
#include "daemon/netlink_watch.h"
#include "daemon/tcp_probe.h"
#include "daemon/work.h"
#include "detectors/detector.h"

namespace guardian {
namespace {

struct Target {
  std::string text;  // as configured
  std::string host;
  int port = 0;
};

// "host:port" or "[v6]:port"; false when it is neither.
bool ParseTarget(const std::string& text, Target* t) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= text.size()) return false;
  std::string host = text.substr(0, colon);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = 0;
  for (char c : text.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535) return false;
    port = port * 10 + (c - '0');
  }
  if (port <= 0 || port > 65535 || host.empty()) return false;
  *t = {text, host, port};
  return true;
}

bool IsNumeric(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

struct Sweep {
  size_t pending = 0;
  std::vector<std::string> cut_off, down, up;  // "target: why"
};

class NetworkUnreachableDetector : public Detector {
 public:
  explicit NetworkUnreachableDetector(const DetectorEnv& env) : env_(env) {
    const Params& p = env.check.params;
    for (const auto& text : ParamList(p, "targets")) {
      Target t;
      if (ParseTarget(text, &t))
        targets_.push_back(t);
      else
        bad_targets_.push_back(text);
    }
    dns_.servers = ParamList(p, "dns_servers");
    timeout_ms_ = ParamInt(p, "timeout_ms", 1000);
    dns_.timeout_ms = timeout_ms_;
    dns_.tries = 1;
    for (const auto& ms : ParamList(p, "offline_probe_ms")) {
      char* end = nullptr;
      long long v = std::strtoll(ms.c_str(), &end, 10);
      if (end == ms.c_str() || *end != '\0' || v <= 0)
        bad_targets_.push_back("offline_probe_ms " + ms);
      else
        backoff_.push_back(v);
    }
    if (backoff_.empty()) backoff_ = {10000, 30000, 60000};
  }

  Status Start(std::function<void()> wake) override {
    if (!bad_targets_.empty())
      return Status::InvalidArgument(
          "targets must be host:port and offline_probe_ms positive "
          "integers, not '" +
          bad_targets_[0] + "'");
    resolver_ = std::make_unique<DnsResolver>(env_.loop);
    start_error_ = resolver_->Init(dns_);
    if (!start_error_.ok()) return start_error_;
    // A link or route change wakes a probe at once; without netlink the interval still probes.
    links_ = std::make_unique<NetlinkWatch>(env_.loop);
    Status s = links_->Start([this, wake] {
      link_changed_ = true;  // while offline too: a link that comes back is probed at once
      wake();
    });
    if (!s.ok()) links_.reset();
    return s;
  }

  void Close(std::function<void()> closed) override {
    for (auto& p : probes_) p.probe->Cancel();
    probes_.clear();
    links_.reset();
    if (!resolver_) return closed();
    resolver_->Close([this, self = shared_from_this(), closed] {
      resolver_.reset();
      closed();
    });
  }

  void Probe(std::function<void(Observation)> done) override {
    if (!resolver_) return done(Observation::Unknown("not started: " + bad_targets_.front()));
    // Never probe other DNS servers than the configured ones.
    if (!start_error_.ok()) return done(Observation::Unknown(start_error_.message()));
    auto offline = std::make_shared<bool>(false);
    std::string dir = env_.check_state_dir;
    std::string flags_file = env_.service ? env_.service->flags_file : "";
    QueueWork(
        env_.loop,
        [=] {
          *offline = ReadDegraded(dir, flags_file, "offline_mode", "offline_mode").by_this_check;
        },
        [this, weak = weak_from_this(), offline, done] {
          if (weak.expired()) return done(Observation::Unknown("check closed"));
          OnState(*offline, done);
        });
  }

 private:
  void OnState(bool offline, std::function<void(Observation)> done) {
    int64_t now = static_cast<int64_t>(uv_now(env_.loop));
    if (!offline) {
      offline_since_ = -1;
      return SweepAll(false, done);
    }
    if (offline_since_ < 0) {
      offline_since_ = now;
      next_offline_probe_ = now + backoff_[0];
      offline_probes_ = 0;
    }
    if (now < next_offline_probe_ && !std::exchange(link_changed_, false)) {
      Observation o = Observation::Ok("offline mode: " + last_verdict_ + "; next probe in " +
                                      std::to_string((next_offline_probe_ - now) / 1000) + " s");
      o.gauges = Gauges(true, next_offline_probe_ - now);
      o.degraded = true;
      return done(std::move(o));
    }
    link_changed_ = false;
    ++offline_probes_;
    size_t step = std::min(offline_probes_, backoff_.size() - 1);
    next_offline_probe_ = now + backoff_[step];
    SweepAll(true, done);
  }

  void SweepAll(bool offline, std::function<void(Observation)> done) {
    std::erase_if(probes_, [](const InFlight& p) { return *p.done; });
    auto sweep = std::make_shared<Sweep>();
    sweep->pending = targets_.size();
    if (targets_.empty()) return done(Observation::Unknown("no targets"));
    auto finish = [this, weak = weak_from_this(), sweep, offline, done] {
      if (weak.expired()) return done(Observation::Unknown("check closed"));
      done(Judge(*sweep, offline));
    };
    for (const auto& t : targets_) {
      auto one = [sweep, finish, text = t.text](const std::string& kind, const std::string& why) {
        std::string line = text + ": " + why;
        if (kind == "up")
          sweep->up.push_back(line);
        else if (kind == "down")
          sweep->down.push_back(line);
        else
          sweep->cut_off.push_back(line);
        if (--sweep->pending == 0) finish();
      };
      if (IsNumeric(t.host)) {
        Connect(t.host, t.port, one);
        continue;
      }
      resolver_->Resolve(t.host, [this, t, one](DnsAnswer a) {
        if (!a.ok()) {
          // nxdomain is an answer: the resolver is reachable, the name is wrong.
          return one(a.error_kind == "nxdomain" ? "down" : "cut",
                     "DNS " + a.error_kind + " after " + std::to_string(a.elapsed_ms) + " ms");
        }
        Connect(a.addresses.front(), t.port, one);
      });
    }
  }

  template <typename One>
  void Connect(const std::string& address, int port, One one) {
    // The handle is kept until its answer came: dropping it would cancel the connect. Probes
    // of a check may overlap (the schedule's and an incident's), so each entry says when it
    // is done and only done ones are pruned.
    auto finished = std::make_shared<bool>(false);
    auto probe = TcpProbe::Start(
        env_.loop, address, port, timeout_ms_, [one, address, finished](TcpProbeResult r) {
          *finished = true;
          std::string at = address + " ";
          if (r.ok()) return one("up", at + "connected in " + std::to_string(r.elapsed_ms) + " ms");
          if (r.error_kind == "refused") return one("down", at + "refused (the host answers)");
          one(r.error_kind == "error" ? "down" : "cut",
              at + r.error_kind + " after " + std::to_string(r.elapsed_ms) + " ms");
        });
    if (!*finished) probes_.push_back({std::move(probe), finished});
  }

  Observation Judge(const Sweep& s, bool offline) {
    auto join = [](const std::vector<std::string>& v) {
      std::string out;
      for (const auto& x : v) out += (out.empty() ? "" : "; ") + x;
      return out;
    };
    bool network_down = s.up.empty() && s.down.empty();
    Observation o;
    if (network_down) {
      last_verdict_ = "network down since the last probe (" + join(s.cut_off) + ")";
      o = offline ? Observation::Ok("offline mode: " + last_verdict_)
                  : Observation::Failing("network down: all " + std::to_string(targets_.size()) +
                                         " targets cut off (" + join(s.cut_off) + ")");
    } else if (offline) {
      o = Observation::Failing("network back (" + join(s.up) + (s.down.empty() ? "" : "; ") +
                               join(s.down) + "), but offline mode is still on");
      o.new_input = "the network is back";
    } else if (!s.cut_off.empty() || !s.down.empty()) {
      o = Observation::Ok("network up (" + join(s.up) + "); not the network: " + join(s.cut_off) +
                          (s.cut_off.empty() || s.down.empty() ? "" : "; ") + join(s.down));
    } else {
      o = Observation::Ok("network up: " + join(s.up));
    }
    int64_t now = static_cast<int64_t>(uv_now(env_.loop));
    o.gauges = Gauges(offline && network_down, offline ? next_offline_probe_ - now : 0);
    o.degraded = offline && network_down;
    o.gauges["targets_reachable"] = static_cast<double>(s.up.size() + s.down.size());
    return o;
  }

  std::map<std::string, double> Gauges(bool offline, int64_t next_ms) const {
    return {{"offline", offline ? 1 : 0},
            {"next_offline_probe_s", static_cast<double>(std::max<int64_t>(next_ms, 0)) / 1000}};
  }

  DetectorEnv env_;
  std::vector<Target> targets_;
  std::vector<std::string> bad_targets_;
  DnsOptions dns_;
  int64_t timeout_ms_;
  std::vector<int64_t> backoff_;
  std::unique_ptr<DnsResolver> resolver_;
  Status start_error_;
  struct InFlight {
    std::shared_ptr<TcpProbe> probe;
    std::shared_ptr<bool> done;
  };
  std::vector<InFlight> probes_;
  std::unique_ptr<NetlinkWatch> links_;
  bool link_changed_ = false;
  int64_t offline_since_ = -1, next_offline_probe_ = 0;
  size_t offline_probes_ = 0;
  std::string last_verdict_ = "network down";
};

}  // namespace

GUARDIAN_REGISTER_DETECTOR(
    network_unreachable,
    DetectorFactory{
        "network_unreachable",
        {
            {"targets", ParamType::kStringList, true,
             "host:port the stack needs (names are resolved through dns_servers); all cut off "
             "is \"network down\""},
            {"dns_servers", ParamType::kStringList, false,
             "DNS servers, \"ip:port\" (default: /etc/resolv.conf's)"},
            {"timeout_ms", ParamType::kInt, false,
             "deadline of each lookup and each connect (default 1000)"},
            {"offline_probe_ms", ParamType::kStringList, false,
             "in offline mode, the probe schedule: \"10000\", \"30000\", \"60000\" (the "
             "last repeats)"},
            {"service", ParamType::kString, false,
             "the supervised service put in offline mode (its flags' offline_mode)"},
        },
        [](const DetectorEnv& env) -> std::shared_ptr<Detector> {
          return std::make_shared<NetworkUnreachableDetector>(env);
        },
    });

}  // namespace guardian
