#pragma once
// FleetLeader: this host's part in the fleet's election (docs/fleet.md). While the host holds
// its seat it campaigns with etcd's election API on its own lease, so a leader that stops, dies
// or is cut off loses the office when that lease ends, and the next host in line is elected.
// The epoch is the leader key's create revision: it only grows.
//
// The leader publishes the fleet's summary (/guardian/FLEET/summary: leader, epoch, each host's
// heartbeat and open incidents, the slots in use) every third of the TTL. Each write is one
// transaction that first compares the create revision of its own leader key with its epoch, so
// a write from a host that lost the office (stopped, partitioned, its lease gone) is refused by
// etcd, whatever the host's own clock or state says; the host then stands down, audits why and,
// still seated, campaigns again.
//
// Thread: loop thread only. Owned by the daemon beside its FleetMember, which it uses.

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/etcd_client.h"
#include "daemon/fleet_member.h"
#include "daemon/timer.h"

namespace guardian {

// Where the election and the leader's summary live.
std::string ElectionName(const std::string& fleet);  // PREFIX "leader"
std::string SummaryKey(const std::string& fleet);    // PREFIX "summary"

// The fleet as etcd holds it, for the leader's summary and GET /v1/fleet: each seated host
// (its heartbeat's value, age and whether it leads), the slots of each mode in line order, and
// the leader (the election key made first). Plain, for tests.
struct FleetRead {
  std::vector<EtcdKv> hosts, slots, candidates;
  std::vector<EtcdKv> summary;  // the leader's last summary
  int64_t revision = 0;
};
nlohmann::json FleetViewJson(const FleetConfig& config, const FleetRead& read, int64_t now_ms);

class FleetLeader {
 public:
  // `audit(kind, detail)` records elections and stand-downs.
  FleetLeader(FleetMember* member,
              std::function<void(const std::string&, const std::string&)> audit);
  ~FleetLeader();
  FleetLeader(const FleetLeader&) = delete;
  FleetLeader& operator=(const FleetLeader&) = delete;

  bool leading() const { return leading_; }
  int64_t epoch() const { return epoch_; }
  // {leading, epoch, since, published, refused_writes, last_refused}
  nlohmann::json Describe() const;
  // One read of everything GET /v1/fleet shows, at one revision.
  void Read(std::function<void(Status, FleetRead)> done);

 private:
  void OnMemberState(FleetMember::State s);
  void Campaign();
  void Elected(const EtcdLeader& leader);
  void Publish();
  void StandDown(const std::string& why, bool campaign_again);

  FleetMember* member_;
  std::function<void(const std::string&, const std::string&)> audit_;
  uint64_t campaign_ = 0;  // the campaign stream while it waits
  int64_t campaign_lease_ = 0;
  bool leading_ = false;
  int64_t epoch_ = 0;
  std::string leader_key_;
  int64_t since_ms_ = 0;
  int64_t published_ = 0;
  int64_t refused_ = 0;
  std::string last_refused_;
  FleetRead last_read_;
  std::unique_ptr<Timer> timer_;  // the next summary while leading
  std::shared_ptr<bool> alive_;
};

}  // namespace guardian
