#include "daemon/fleet_member.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "daemon/clock.h"
#include "daemon/file_util.h"
#include "daemon/work.h"

namespace guardian {

int64_t ReconnectDelayMs(int attempt, int64_t base_ms, int64_t max_ms, double unit) {
  int64_t delay = base_ms;
  for (int i = 0; i < attempt && delay < max_ms; ++i) delay *= 2;
  delay = std::min(delay, max_ms);
  return delay / 2 + static_cast<int64_t>(static_cast<double>(delay / 2) * unit);
}

std::string FleetPrefix(const std::string& fleet) { return "/guardian/" + fleet + "/"; }

std::string HostKey(const std::string& fleet, const std::string& host) {
  return FleetPrefix(fleet) + "hosts/" + host;
}

const char* FleetMember::StateName(State s) {
  switch (s) {
    case State::kConnecting:
      return "connecting";
    case State::kConnected:
      return "connected";
    case State::kCutOff:
      return "cut_off";
  }
  return "?";
}

FleetMember::FleetMember(uv_loop_t* loop, FleetConfig config, std::string lease_file,
                         std::function<nlohmann::json()> report)
    : loop_(loop),
      config_(std::move(config)),
      lease_file_(std::move(lease_file)),
      report_(std::move(report)),
      timer_(std::make_unique<Timer>(loop)),
      rng_(std::random_device{}()) {
  EtcdConfig ec;
  ec.endpoints = config_.endpoints;
  ec.ca_file = config_.ca_file;
  ec.cert_file = config_.cert_file;
  ec.key_file = config_.key_file;
  ec.timeout_ms = config_.request_timeout_ms;
  etcd_ = std::make_unique<EtcdClient>(loop, std::move(ec));
}

FleetMember::~FleetMember() = default;

void FleetMember::Start() {
  since_ms_ = SystemClock::Get()->WallMs();
  // A lease left by this host's previous guardiand (a crash, a restart) would keep its seat
  // taken until it expires: revoke it first.
  auto previous = std::make_shared<int64_t>(0);
  std::string file = lease_file_;
  QueueWork(
      loop_,
      [file, previous] {
        std::string text;
        if (ReadRegularFile(file, 64, &text).ok())
          *previous = std::strtoll(text.c_str(), nullptr, 10);
      },
      [this, previous, g = generation_] {
        if (closing_ || g != generation_) return;
        if (*previous <= 0) return Connect();
        etcd_->LeaseRevoke(*previous, [this, g](Status) {
          if (!closing_ && g == generation_) Connect();
        });
      });
}

void FleetMember::Connect() {
  uint64_t g = ++generation_;
  // The lease lost with the connection may still be alive in etcd, holding the seat and any
  // slot: revoke it first (best effort; it runs out by itself otherwise).
  if (stale_lease_ != 0) {
    int64_t stale = stale_lease_;
    etcd_->LeaseRevoke(stale, [this, g, stale](Status s) {
      if (closing_ || g != generation_) return;
      if (s.ok() || s.code() == Status::Code::kNotFound) {
        if (stale_lease_ == stale) stale_lease_ = 0;
      }
      Grant(g);
    });
    return;
  }
  Grant(g);
}

void FleetMember::Grant(uint64_t g) {
  int64_t asked_mono = SystemClock::Get()->MonoMs();
  etcd_->LeaseGrant(config_.lease_ttl_s, [this, g, asked_mono](Status s, int64_t lease) {
    if (closing_ || g != generation_) return;
    if (!s.ok()) return Lost("cannot take a lease: " + s.message());
    lease_ = lease;
    // Valid at most a TTL from when it was asked for: etcd may have started it then.
    valid_until_mono_ = asked_mono + config_.lease_ttl_s * 1000;
    Register();
  });
}

bool FleetMember::LeaseValid() const {
  return state_ == State::kConnected && lease_ != 0 &&
         SystemClock::Get()->MonoMs() + kLeaseMarginMs < valid_until_mono_;
}

void FleetMember::Register() {
  uint64_t g = generation_;
  std::string key = HostKey(config_.name, config_.host);
  // Only a free seat is taken: another guardiand with this host id keeps its own.
  etcd_->Txn({{key, "CREATE", "EQUAL", "", 0}}, {EtcdOp::Put(key, SeatValue(), lease_)},
             {EtcdOp::Range(key)}, [this, g, key](Status s, EtcdTxnResult r) {
               if (closing_ || g != generation_) return;
               if (!s.ok()) return Lost("cannot register " + key + ": " + s.message());
               int64_t holder = r.ranges.empty() || r.ranges[0].empty() ? 0 : r.ranges[0][0].lease;
               // Held on this very lease: an earlier try of this Register went through (its answer
               // was lost to a timeout), so the seat is ours.
               if (!r.succeeded && holder != lease_) {
                 int64_t mine = lease_;
                 etcd_->LeaseRevoke(mine, [](Status) {});
                 // Revoked (or running out) and holding nothing: not the stale lease that
                 // Lost keeps for the next Connect, which may be an older one still holding
                 // this host's seat.
                 lease_ = 0;
                 return Lost("host id '" + config_.host + "' is held by another guardiand (lease " +
                             std::to_string(holder) + "); retrying until it is free");
               }
               if (state_ == State::kCutOff) ++reconnects_;
               attempt_ = 0;
               last_error_.clear();
               SaveLease();
               spdlog::info("fleet {}: host {} joined (lease {})", config_.name, config_.host,
                            lease_);
               SetState(State::kConnected);
               timer_->Start(config_.lease_ttl_s * 1000 / 3, [this] { Heartbeat(); });
             });
}

void FleetMember::Heartbeat() {
  uint64_t g = generation_;
  int64_t sent_mono = SystemClock::Get()->MonoMs();
  etcd_->LeaseKeepAlive(lease_, [this, g, sent_mono](Status s, int64_t ttl_s) {
    if (closing_ || g != generation_) return;
    if (!s.ok()) return Lost("lease " + std::to_string(lease_) + ": " + s.message());
    // The TTL counts from when etcd got the keep-alive, at the latest from when it was sent.
    valid_until_mono_ = sent_mono + ttl_s * 1000;
    std::string key = HostKey(config_.name, config_.host);
    // Written only while the seat is still ours (its lease is this one).
    etcd_->Txn({{key, "LEASE", "EQUAL", "", lease_}}, {EtcdOp::Put(key, SeatValue(), lease_)}, {},
               [this, g](Status s, EtcdTxnResult r) {
                 if (closing_ || g != generation_) return;
                 if (!s.ok()) return Lost("heartbeat: " + s.message());
                 if (!r.succeeded) return Lost("this host's seat was taken by another lease");
                 timer_->Start(config_.lease_ttl_s * 1000 / 3, [this] { Heartbeat(); });
               });
  });
}

std::string FleetMember::SeatValue() const {
  nlohmann::json value = report_ ? report_() : nlohmann::json::object();
  value["heartbeat_at"] = SystemClock::Get()->WallMs();
  value["lease"] = lease_;
  return value.dump();
}

void FleetMember::Lost(const std::string& why) {
  ++generation_;  // whatever is still in flight belongs to the connection that is gone
  if (lease_ != 0) stale_lease_ = lease_;  // revoked before the next lease is taken
  lease_ = 0;                              // never act on a lease that may have expired
  valid_until_mono_ = 0;
  last_error_ = why;
  int64_t delay = ReconnectDelayMs(attempt_++, config_.reconnect_base_ms, config_.reconnect_max_ms,
                                   std::uniform_real_distribution<double>(0, 1)(rng_));
  spdlog::warn("fleet {}: cut off ({}); trying again in {} ms", config_.name, why, delay);
  SetState(State::kCutOff);
  timer_->Start(delay, [this] { Connect(); });
}

void FleetMember::SetState(State s) {
  if (s == state_) return;
  state_ = s;
  since_ms_ = SystemClock::Get()->WallMs();
  for (auto& cb : on_change_) cb(s);
}

void FleetMember::SaveLease() const {
  std::string file = lease_file_;
  std::string text = std::to_string(lease_) + "\n";
  QueueWork(
      loop_, [file, text] { (void)WriteFileAtomic(file, text, 0600); }, [] {});
}

nlohmann::json FleetMember::Describe() const {
  return {{"fleet", config_.name},
          {"host", config_.host},
          {"state", StateName(state_)},
          {"since", since_ms_},
          {"lease", lease_},
          {"reconnects", reconnects_},
          {"last_error", last_error_},
          {"endpoints", config_.endpoints}};
}

void FleetMember::Close(std::function<void()> closed) {
  if (closing_) return;
  closing_ = true;
  timer_.reset();  // its handle closes while the requests below finish
  auto finish = [this, closed = std::move(closed)] { etcd_->Close(closed); };
  if (lease_ == 0) return finish();
  // Leaving cleanly frees the seat and every slot at once; the lease file goes with it.
  std::string file = lease_file_;
  etcd_->LeaseRevoke(lease_, [this, file, finish](Status s) {
    if (s.ok()) {
      QueueWork(
          loop_,
          [file] {
            std::error_code ec;
            std::filesystem::remove(file, ec);
          },
          finish);
      return;
    }
    finish();
  });
}

}  // namespace guardian
