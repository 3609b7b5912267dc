#include "daemon/fleet_slots.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "daemon/clock.h"
#include "daemon/timer.h"

namespace guardian {

std::string SlotsPrefix(const std::string& fleet, const std::string& mode) {
  return FleetPrefix(fleet) + "slots/" + mode + "/";
}

SlotDecision DecideSlot(const std::vector<std::string>& slots, const std::string& host,
                        int64_t hosts, const FleetSlotBudget& budget) {
  SlotDecision d;
  auto me = std::find(slots.begin(), slots.end(), host);
  if (me == slots.end()) {
    d.why = "this host's slot is not there (its lease is gone)";
    return d;
  }
  auto rank = static_cast<int64_t>(me - slots.begin());
  if (rank >= budget.max_concurrent) {
    std::string ahead;
    for (auto it = slots.begin(); it != me; ++it) ahead += (ahead.empty() ? "" : ", ") + *it;
    d.why = std::to_string(rank) + " host(s) ahead (" + ahead + "), max_concurrent " +
            std::to_string(budget.max_concurrent);
    return d;
  }
  // Hosts left healthy if this one acts: every host without a slot up to this one's.
  int64_t healthy = hosts - (rank + 1);
  if (healthy < budget.min_healthy) {
    d.why = "acting would leave " + std::to_string(std::max<int64_t>(healthy, 0)) + " of " +
            std::to_string(hosts) + " host(s) healthy, min_healthy " +
            std::to_string(budget.min_healthy);
    return d;
  }
  d.granted = true;
  d.why = "slot " + std::to_string(rank + 1) + " of " + std::to_string(budget.max_concurrent) +
          ", " + std::to_string(healthy) + " of " + std::to_string(hosts) + " host(s) healthy";
  return d;
}

bool TurnMayChange(std::set<std::string>& ahead, const std::string& mine,
                   const std::vector<EtcdEvent>& events, int64_t max_concurrent) {
  bool changed = false;
  for (const auto& e : events) {
    // A put is a key made after this host's (behind it in line) or a value rewritten: neither
    // moves this host forward.
    if (!e.deleted) continue;
    if (e.kv.key == mine) return true;  // its own key gone: the read makes it again or drops
    changed |= ahead.erase(e.kv.key) > 0;
  }
  return changed && static_cast<int64_t>(ahead.size()) < max_concurrent;
}

struct FleetSlots::Request {
  std::map<std::string, std::function<void(Status)>> waiting;  // holder -> done
  std::map<std::string, std::function<void(const std::string&)>> on_wait;
  std::vector<std::string> holders;  // granted
  bool granted = false;
  int64_t lease = 0;  // the lease the slot key was made on
  uint64_t watch = 0;
  int64_t watch_opened_mono = 0;  // when the watch was opened, to pace reopening it
  int reclaims = 0;               // own key found missing while the lease is live
  // While waiting: the keys ahead of this host's in the line, as last read. A watch event
  // re-reads the line only when it could change the answer (a key ahead or this host's own
  // deleted, and few enough left ahead), so a release wakes the next host in line, not the
  // whole line (no thundering herd of range reads).
  std::set<std::string> ahead;
  std::unique_ptr<Timer> rejudge;  // min_healthy depends on the hosts' seats, not watched
  bool judging = false;
  bool again = false;  // something changed while judging
};

FleetSlots::FleetSlots(FleetMember* member)
    : member_(member), alive_(std::make_shared<bool>(true)) {
  member_->OnChange([this, alive = alive_](FleetMember::State s) {
    if (*alive) OnMemberState(s);
  });
}

FleetSlots::~FleetSlots() {
  *alive_ = false;  // answers still in flight find nothing to call back
  for (auto& [mode, r] : requests_) {
    if (r->watch) member_->etcd().Cancel(r->watch);
    r->rejudge.reset();
  }
  discards_.clear();
}

void FleetSlots::Acquire(const std::string& mode, const std::string& holder,
                         std::function<void(Status)> done,
                         std::function<void(const std::string&)> waiting) {
  if (!member_->LeaseValid()) {
    return done(Status::Aborted("cut off from fleet " + member_->config().name + ": " +
                                member_->Describe()["last_error"].get<std::string>()));
  }
  if (auto old = Find(mode); old && old->granted && old->lease != member_->lease())
    Drop(mode, Status::Aborted("the lease under the slot changed"));
  auto& r = requests_[mode];
  if (r && r->granted) {
    r->holders.push_back(holder);
    return done(Status::OK());
  }
  bool fresh = !r;
  if (fresh) {
    r = std::make_shared<Request>();
    discards_.erase(mode);  // the key's place in the queue is wanted again: Claim keeps it
  }
  r->waiting[holder] = std::move(done);
  if (waiting) r->on_wait[holder] = std::move(waiting);
  // A delete of this mode's key still in flight could land after the key is taken again:
  // the Claim waits for it (Discard's answer sends it).
  if (fresh && !discarding_.count(mode)) Claim(mode);
}

std::shared_ptr<FleetSlots::Request> FleetSlots::Find(const std::string& mode) const {
  auto it = requests_.find(mode);
  return it == requests_.end() ? nullptr : it->second;
}

void FleetSlots::Claim(const std::string& mode) {
  auto r = Find(mode);
  // Never a slot key without a live lease under it: one on no lease would never expire.
  if (!member_->LeaseValid()) return Drop(mode, Status::Aborted("the host's lease is not live"));
  const FleetConfig& c = member_->config();
  std::string key = SlotsPrefix(c.name, mode) + c.host;
  r->lease = member_->lease();
  nlohmann::json value = {{"since", SystemClock::Get()->WallMs()}};
  if (!r->waiting.empty()) value["holder"] = r->waiting.begin()->first;
  // Made only when absent: an older key of this host keeps its place in the queue.
  member_->etcd().Txn(
      {{key, "CREATE", "EQUAL", "", 0}}, {EtcdOp::Put(key, value.dump(), r->lease)},
      {EtcdOp::Range(key)}, [this, alive = alive_, mode, r, key](Status s, EtcdTxnResult t) {
        if (!*alive) return;
        // Released or dropped meanwhile: the key may have been made after the delete (or the
        // answer lost to a timeout after it was applied), so it goes again.
        if (Find(mode) != r) return Discard(mode, r->lease);
        if (!s.ok()) return Drop(mode, Status::IOError("cannot take a slot: " + s.message()));
        if (!t.succeeded && !t.ranges.empty() && !t.ranges[0].empty() &&
            t.ranges[0][0].lease != r->lease) {
          // A key of this host on another lease (left by a previous run): replace
          // it.
          int64_t old = t.ranges[0][0].lease;
          member_->etcd().Txn({{key, "LEASE", "EQUAL", "", old}}, {EtcdOp::Delete(key)}, {},
                              [this, alive, mode, r](Status, EtcdTxnResult) {
                                if (*alive && Find(mode) == r) Claim(mode);
                              });
          return;
        }
        Judge(mode);
      });
}

void FleetSlots::Judge(const std::string& mode) {
  auto r = Find(mode);
  if (r->judging) {
    r->again = true;
    return;
  }
  r->judging = true;
  const FleetConfig& c = member_->config();
  // One read of both prefixes at one revision.
  member_->etcd().Txn(
      {},
      {EtcdOp::Range(SlotsPrefix(c.name, mode), true),
       EtcdOp::Range(FleetPrefix(c.name) + "hosts/", true)},
      {}, [this, alive = alive_, mode, r](Status s, EtcdTxnResult t) {
        if (!*alive || Find(mode) != r) return;
        r->judging = false;
        if (!s.ok() || t.ranges.size() != 2)
          return Drop(mode, Status::IOError("cannot read the fleet's slots: " + s.message()));
        std::vector<EtcdKv> kvs = t.ranges[0];
        std::sort(kvs.begin(), kvs.end(), [](const EtcdKv& a, const EtcdKv& b) {
          return a.create_revision < b.create_revision;
        });
        std::string prefix = SlotsPrefix(member_->config().name, mode);
        std::vector<std::string> slots;
        for (const auto& kv : kvs) slots.push_back(kv.key.substr(prefix.size()));
        std::set<std::string> ahead;
        for (const auto& kv : kvs) {
          if (kv.key == prefix + member_->config().host) break;
          ahead.insert(kv.key);
        }
        SlotDecision d =
            DecideSlot(slots, member_->config().host, static_cast<int64_t>(t.ranges[1].size()),
                       member_->config().BudgetFor(mode));
        if (std::find(slots.begin(), slots.end(), member_->config().host) == slots.end()) {
          // Deleted under a live lease (a Release of an earlier request landing late): made
          // again, a few times at most.
          if (member_->LeaseValid() && member_->lease() == r->lease && r->reclaims++ < 3)
            return Claim(mode);
          return Drop(mode, Status::Aborted(d.why));
        }
        if (!d.granted) {
          if (r->again) {
            r->again = false;
            return Judge(mode);
          }
          r->ahead = std::move(ahead);
          return Wait(mode, t.revision, d.why);
        }
        if (!member_->LeaseValid() || member_->lease() != r->lease)
          return Drop(mode, Status::Aborted("the host's lease changed while waiting for a slot"));
        r->granted = true;
        if (r->watch) member_->etcd().Cancel(r->watch);
        r->watch = 0;
        r->rejudge.reset();
        auto dones = std::move(r->waiting);
        r->waiting.clear();
        r->on_wait.clear();
        for (auto& [holder, done] : dones) r->holders.push_back(holder);
        spdlog::info("fleet {}: slot of {} granted ({})", member_->config().name, mode, d.why);
        for (auto& [holder, done] : dones) done(Status::OK());
      });
}

void FleetSlots::Wait(const std::string& mode, int64_t revision, const std::string& why) {
  auto r = Find(mode);
  for (auto& [holder, cb] : r->on_wait) cb(why);
  const FleetConfig& c = member_->config();
  if (!r->watch) {
    r->watch_opened_mono = SystemClock::Get()->MonoMs();
    r->watch = member_->etcd().Watch(
        SlotsPrefix(c.name, mode), true, revision + 1,
        [this, alive = alive_, mode, r](std::vector<EtcdEvent> events, int64_t) {
          if (!*alive || Find(mode) != r || r->granted) return;
          const FleetConfig& c = member_->config();
          if (TurnMayChange(r->ahead, SlotsPrefix(c.name, mode) + c.host, events,
                            c.BudgetFor(mode).max_concurrent))
            Judge(mode);
        },
        [this, alive = alive_, mode, r](Status s) {
          if (!*alive || Find(mode) != r || r->granted) return;
          r->watch = 0;
          // The stream broke: judge again, which opens a new one if it must still wait; one
          // that ended at once is left to the rejudge timer, so a failing stream is not
          // reopened in a tight loop.
          if (member_->state() == FleetMember::State::kConnected) {
            if (SystemClock::Get()->MonoMs() - r->watch_opened_mono >= kWatchMinLifeMs) Judge(mode);
            return;
          }
          Drop(mode, Status::Aborted("cut off while waiting for a slot: " + s.message()));
        });
  }
  if (!r->rejudge) {
    r->rejudge = std::make_unique<Timer>(member_->loop());
    // Holds `r` weakly: the timer belongs to it.
    r->rejudge->StartRepeat(c.lease_ttl_s * 1000 / 3,
                            [this, mode, weak = std::weak_ptr<Request>(r)] {
                              auto r = weak.lock();
                              if (r && Find(mode) == r && !r->granted) Judge(mode);
                            });
  }
}

void FleetSlots::Drop(const std::string& mode, const Status& why) {
  auto it = requests_.find(mode);
  if (it == requests_.end()) return;
  auto r = it->second;
  requests_.erase(it);
  if (r->watch) member_->etcd().Cancel(r->watch);
  r->rejudge.reset();
  // Its key may be in etcd (made, or made by a request whose answer was lost): it goes too.
  Discard(mode, r->lease);
  for (auto& [holder, done] : r->waiting) done(why);
}

void FleetSlots::Release(const std::string& mode, const std::string& holder) {
  auto it = requests_.find(mode);
  if (it == requests_.end()) return;
  auto r = it->second;
  r->waiting.erase(holder);
  r->on_wait.erase(holder);
  r->holders.erase(std::remove(r->holders.begin(), r->holders.end(), holder), r->holders.end());
  if (!r->waiting.empty() || !r->holders.empty()) return;
  requests_.erase(it);
  if (r->watch) member_->etcd().Cancel(r->watch);
  r->rejudge.reset();
  Discard(mode, r->lease);
}

void FleetSlots::Discard(const std::string& mode, int64_t lease) {
  // A new request of the mode keeps the key; a key on a lease that is gone is gone with it.
  if (Find(mode) || lease == 0 || lease != member_->lease()) {
    discards_.erase(mode);
    return;
  }
  const FleetConfig& c = member_->config();
  std::string key = SlotsPrefix(c.name, mode) + c.host;
  // Deleted only while it is still on that lease; until then it would hold a place in the
  // queue for as long as this host lives, so a failed delete is tried again.
  ++discarding_[mode];
  member_->etcd().Txn({{key, "LEASE", "EQUAL", "", lease}}, {EtcdOp::Delete(key)}, {},
                      [this, alive = alive_, mode, lease](Status s, EtcdTxnResult) {
                        if (!*alive) return;
                        // Another delete of the mode still in flight: its answer decides.
                        if (--discarding_[mode] > 0) return;
                        discarding_.erase(mode);
                        // Asked for again meanwhile: its Claim waited for this delete.
                        if (Find(mode)) {
                          discards_.erase(mode);
                          return Claim(mode);
                        }
                        if (s.ok()) {
                          discards_.erase(mode);
                          return;
                        }
                        auto& timer = discards_[mode];
                        if (!timer) timer = std::make_unique<Timer>(member_->loop());
                        timer->Start(kDiscardRetryMs,
                                     [this, mode, lease] { Discard(mode, lease); });
                      });
}

bool FleetSlots::Holds(const std::string& mode, const std::string& holder) const {
  auto it = requests_.find(mode);
  if (it == requests_.end()) return false;
  const Request& r = *it->second;
  return r.granted && member_->LeaseValid() && r.lease == member_->lease() &&
         std::find(r.holders.begin(), r.holders.end(), holder) != r.holders.end();
}

void FleetSlots::OnMemberState(FleetMember::State s) {
  if (s == FleetMember::State::kConnected) return;
  std::vector<std::string> modes;
  for (auto& [mode, r] : requests_) modes.push_back(mode);
  for (const auto& mode : modes)
    Drop(mode, Status::Aborted("cut off from fleet " + member_->config().name));
}

}  // namespace guardian
