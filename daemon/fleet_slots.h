#pragma once
// FleetSlots: the fleet's remediation budget (docs/fleet.md). Before a disruptive playbook acts,
// its host takes a slot of the check's mode: a key /guardian/FLEET/slots/MODE/HOST on the host's
// own lease, so a host that dies frees its slot when the lease runs out. Slots are granted in
// the order their keys were made (create revision), to the first `max_concurrent`, and only
// while at least `min_healthy` hosts of the fleet hold no slot of the mode; the others wait,
// woken by a watch on the mode's slots, and by the hosts' heartbeats for `min_healthy`.
//
// A slot is only as good as the lease under it: when the host is cut off (the lease is gone or
// may be), every grant is void at once, and waiting requests fail.
//
// A key this host no longer wants (given back, or its request failed, possibly after etcd
// applied it) is deleted until it is gone, for as long as its lease lives: otherwise it would
// stand in line ahead of every other host.
//
// Thread: loop thread only. Owned by the daemon beside its FleetMember, which it uses.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "daemon/fleet_member.h"
#include "daemon/status.h"
#include "daemon/timer.h"

namespace guardian {

// Where a mode's slots live: FleetPrefix "slots/MODE/"; a host's is that plus the host id.
std::string SlotsPrefix(const std::string& fleet, const std::string& mode);

// Who may act, from what etcd holds: `slots` (host ids in create-revision order, this host's
// among them) and how many hosts have a seat. Plain, for tests: granted when this host is among
// the first `max_concurrent` and the hosts left without a slot of the mode, counting every
// slot up to and including its own, are at least `min_healthy`.
struct SlotDecision {
  bool granted = false;
  std::string why;  // for the step message: "2 hosts ahead (web-1, web-3), max_concurrent 1"
};
SlotDecision DecideSlot(const std::vector<std::string>& slots, const std::string& host,
                        int64_t hosts, const FleetSlotBudget& budget);

// Whether watched `events` on a mode's slots could let a waiting host act, so that it must read
// the line again: its own key (`mine`) deleted, or keys `ahead` of it deleted so that fewer than
// `max_concurrent` are left. Removes the deleted keys from `ahead`. A release then wakes the
// next host in line, not every waiting one (etcd's lock recipe, for a semaphore).
bool TurnMayChange(std::set<std::string>& ahead, const std::string& mine,
                   const std::vector<EtcdEvent>& events, int64_t max_concurrent);

class FleetSlots {
 public:
  explicit FleetSlots(FleetMember* member);
  ~FleetSlots();
  FleetSlots(const FleetSlots&) = delete;
  FleetSlots& operator=(const FleetSlots&) = delete;

  // Takes a slot of `mode` for `holder` (an incident id, say). The slot is the host's: several
  // holders of one mode on one host share it, and it is given back when the last releases it.
  // `done` comes once: ok when granted, else why not (cut off). `waiting` is called each time
  // the request is judged and must wait, with the reason.
  void Acquire(const std::string& mode, const std::string& holder, std::function<void(Status)> done,
               std::function<void(const std::string&)> waiting = nullptr);
  // `holder` gives its share back, or stops waiting. Safe to call when it holds nothing.
  void Release(const std::string& mode, const std::string& holder);
  // Whether `holder` shares a granted slot of `mode`, on a lease that is still this host's.
  bool Holds(const std::string& mode, const std::string& holder) const;
  FleetMember* member() const { return member_; }

 private:
  // The member's state changed (it listens from construction): cut off voids every grant and
  // fails every wait.
  void OnMemberState(FleetMember::State s);
  struct Request;
  std::shared_ptr<Request> Find(const std::string& mode) const;
  void Claim(const std::string& mode);
  void Judge(const std::string& mode);
  void Wait(const std::string& mode, int64_t revision, const std::string& why);
  void Drop(const std::string& mode, const Status& why);
  // Deletes this host's key of `mode` if it is still on `lease`, retrying until it is gone,
  // the lease is, or the mode is asked for again.
  void Discard(const std::string& mode, int64_t lease);
  static constexpr int64_t kWatchMinLifeMs = 1000;
  static constexpr int64_t kDiscardRetryMs = 1000;

  FleetMember* member_;
  std::map<std::string, std::shared_ptr<Request>> requests_;  // by mode
  std::map<std::string, std::unique_ptr<Timer>> discards_;    // deletes to retry, by mode
  // Deletes in flight by mode: a Claim waits until none is left, as the last one could land
  // after the key is made again and remove a fresh grant's key.
  std::map<std::string, int> discarding_;
  std::shared_ptr<bool> alive_;  // false once destroyed, for answers still in flight
};

}  // namespace guardian
