#pragma once
// FleetMember: this host's seat in its fleet (docs/fleet.md). It holds an etcd lease, kept
// alive every third of its TTL, and under it the key /guardian/FLEET/hosts/HOST, whose value is
// what `report` says of the host (JSON) with the time of the last heartbeat. A host that stops
// (crash, power, partition) loses its seat when the lease runs out, and every slot it held with it.
//
// When etcd cannot be reached, or the lease is found gone, the host is cut off: it tries again
// after base, 2 × base, ... up to the cap (each delay with jitter), and once through takes a new
// lease and registers again. A second guardiand claiming the same host id is refused its seat
// while the first holds it. The lease id is kept in `lease_file`, so a guardiand started again
// revokes its previous lease at once instead of waiting out its TTL.
//
// Thread: loop thread only. Close() revokes the lease (best effort) and ends every request.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/etcd_client.h"
#include "daemon/timer.h"

namespace guardian {

// The delay before reconnect attempt `attempt` (0 first): base × 2^attempt, at most `max`, then
// scaled by `unit` in [0, 1) into [delay / 2, delay), so hosts cut off together spread out.
int64_t ReconnectDelayMs(int attempt, int64_t base_ms, int64_t max_ms, double unit);

// Where a fleet's keys live in etcd.
std::string FleetPrefix(const std::string& fleet);                       // "/guardian/NAME/"
std::string HostKey(const std::string& fleet, const std::string& host);  // PREFIX "hosts/HOST"

class FleetMember {
 public:
  enum class State { kConnecting, kConnected, kCutOff };

  FleetMember(uv_loop_t* loop, FleetConfig config, std::string lease_file,
              std::function<nlohmann::json()> report);
  ~FleetMember();
  FleetMember(const FleetMember&) = delete;
  FleetMember& operator=(const FleetMember&) = delete;

  void Start();
  void Close(std::function<void()> closed);

  // Adds a listener called on every change of state, on the loop.
  void OnChange(std::function<void(State)> cb) { on_change_.push_back(std::move(cb)); }

  State state() const { return state_; }
  int64_t lease() const { return lease_; }
  // Whether the lease is certainly still alive in etcd: connected, and the last keep-alive's
  // TTL (counted from when it was sent) has more than kLeaseMarginMs left. A lease whose
  // keep-alive is late may already be gone there, with its slots given to other hosts, before
  // a failed request says so: nothing acts on it then.
  bool LeaseValid() const;
  static constexpr int64_t kLeaseMarginMs = 500;
  // For status: state, host, fleet, lease, since, last_error, reconnects.
  nlohmann::json Describe() const;
  EtcdClient& etcd() { return *etcd_; }
  uv_loop_t* loop() const { return loop_; }
  const FleetConfig& config() const { return config_; }

  static const char* StateName(State s);

 private:
  void Connect();
  void Grant(uint64_t generation);
  void Register();
  void Heartbeat();
  // The seat's value: what `report` says, the heartbeat's time and the lease.
  std::string SeatValue() const;
  void Lost(const std::string& why);
  void SetState(State s);
  void SaveLease() const;

  uv_loop_t* loop_;
  FleetConfig config_;
  std::string lease_file_;
  std::function<nlohmann::json()> report_;
  std::unique_ptr<EtcdClient> etcd_;
  // The next heartbeat, or the next reconnect attempt; closed by Close().
  std::unique_ptr<Timer> timer_;
  std::vector<std::function<void(State)>> on_change_;
  State state_ = State::kConnecting;
  int64_t lease_ = 0;
  int64_t stale_lease_ = 0;       // the lease lost with the connection, revoked at reconnect
  int64_t valid_until_mono_ = 0;  // see LeaseValid()
  int64_t since_ms_ = 0;          // wall time of the last state change
  int attempt_ = 0;               // reconnect attempts since the last success
  int64_t reconnects_ = 0;
  std::string last_error_;
  std::mt19937_64 rng_;
  uint64_t generation_ = 0;  // bumped by each Connect: answers to an older one are ignored
  bool closing_ = false;
};

}  // namespace guardian
