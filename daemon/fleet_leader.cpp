#include "daemon/fleet_leader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "daemon/clock.h"
#include "daemon/fleet_slots.h"

namespace guardian {

std::string ElectionName(const std::string& fleet) { return FleetPrefix(fleet) + "leader"; }
std::string SummaryKey(const std::string& fleet) { return FleetPrefix(fleet) + "summary"; }

namespace {

bool ByCreation(const EtcdKv& a, const EtcdKv& b) { return a.create_revision < b.create_revision; }

// The election's leader: the candidate whose key was made first; null when there is none.
const EtcdKv* LeaderOf(const std::vector<EtcdKv>& candidates) {
  if (candidates.empty()) return nullptr;
  return &*std::min_element(candidates.begin(), candidates.end(), ByCreation);
}

// What FleetRead holds, as range reads of one transaction, and back.
std::vector<EtcdOp> ReadOps(const FleetConfig& c) {
  return {EtcdOp::Range(FleetPrefix(c.name) + "hosts/", true),
          EtcdOp::Range(FleetPrefix(c.name) + "slots/", true),
          EtcdOp::Range(ElectionName(c.name) + "/", true), EtcdOp::Range(SummaryKey(c.name))};
}
Status FromRanges(EtcdTxnResult& t, FleetRead* r) {
  if (t.ranges.size() != 4)
    return Status::IOError("etcd answered " + std::to_string(t.ranges.size()) + " ranges for 4");
  r->hosts = std::move(t.ranges[0]);
  r->slots = std::move(t.ranges[1]);
  r->candidates = std::move(t.ranges[2]);
  r->summary = std::move(t.ranges[3]);
  r->revision = t.revision;
  return Status::OK();
}

}  // namespace

nlohmann::json FleetViewJson(const FleetConfig& config, const FleetRead& read, int64_t now_ms) {
  nlohmann::json out = {{"fleet", config.name}, {"revision", read.revision}};
  std::string leader;
  out["leader"] = nullptr;
  if (const EtcdKv* l = LeaderOf(read.candidates)) {
    leader = l->value;
    out["leader"] = {{"host", l->value}, {"epoch", l->create_revision}, {"lease", l->lease}};
  }
  std::string hosts_prefix = FleetPrefix(config.name) + "hosts/";
  nlohmann::json hosts = nlohmann::json::array();
  for (const auto& kv : read.hosts) {
    std::string id = kv.key.substr(std::min(hosts_prefix.size(), kv.key.size()));
    nlohmann::json seat = nlohmann::json::parse(kv.value, nullptr, false);
    if (!seat.is_object()) seat = nlohmann::json::object();
    int64_t beat = seat.value("heartbeat_at", int64_t{0});
    hosts.push_back({{"host", id},
                     {"leader", id == leader},
                     {"heartbeat_at", beat},
                     {"heartbeat_age_ms", beat ? now_ms - beat : -1},
                     {"open_incidents", seat.value("open_incidents", int64_t{0})},
                     {"version", seat.value("version", std::string())},
                     {"pid", seat.value("pid", int64_t{0})},
                     {"lease", kv.lease}});
  }
  out["hosts"] = hosts;
  // Slots by mode, in line order; who of them may act now, as each host judges it.
  std::string slots_prefix = FleetPrefix(config.name) + "slots/";
  std::map<std::string, std::vector<EtcdKv>> by_mode;
  for (const auto& [mode, budget] : config.budgets)
    if (mode != "default") by_mode[mode];
  for (const auto& kv : read.slots) {
    std::string rest = kv.key.substr(std::min(slots_prefix.size(), kv.key.size()));
    auto slash = rest.find('/');
    if (slash == std::string::npos) continue;
    by_mode[rest.substr(0, slash)].push_back(kv);
  }
  nlohmann::json budgets = nlohmann::json::array();
  for (auto& [mode, kvs] : by_mode) {
    std::sort(kvs.begin(), kvs.end(), ByCreation);
    std::string prefix = SlotsPrefix(config.name, mode);
    std::vector<std::string> line;
    for (const auto& kv : kvs) line.push_back(kv.key.substr(prefix.size()));
    FleetSlotBudget b = config.BudgetFor(mode);
    nlohmann::json acting = nlohmann::json::array();
    for (const auto& h : line)
      if (DecideSlot(line, h, static_cast<int64_t>(read.hosts.size()), b).granted)
        acting.push_back(h);
    budgets.push_back({{"mode", mode},
                       {"max_concurrent", b.max_concurrent},
                       {"min_healthy", b.min_healthy},
                       {"in_line", line},
                       {"acting", acting}});
  }
  out["budgets"] = budgets;
  // When the leader last published, and with which epoch.
  out["summary"] = nullptr;
  if (!read.summary.empty()) {
    nlohmann::json sum = nlohmann::json::parse(read.summary[0].value, nullptr, false);
    if (sum.is_object() && sum.contains("published_by")) out["summary"] = sum["published_by"];
  }
  return out;
}

FleetLeader::FleetLeader(FleetMember* member,
                         std::function<void(const std::string&, const std::string&)> audit)
    : member_(member), audit_(std::move(audit)), alive_(std::make_shared<bool>(true)) {
  timer_ = std::make_unique<Timer>(member_->loop());
  member_->OnChange([this, alive = alive_](FleetMember::State s) {
    if (*alive) OnMemberState(s);
  });
}

FleetLeader::~FleetLeader() {
  *alive_ = false;
  if (campaign_) member_->etcd().Cancel(campaign_);
}

nlohmann::json FleetLeader::Describe() const {
  return {{"leading", leading_},        {"epoch", epoch_},
          {"since", since_ms_},         {"published", published_},
          {"refused_writes", refused_}, {"last_refused", last_refused_}};
}

void FleetLeader::OnMemberState(FleetMember::State s) {
  if (s == FleetMember::State::kConnected) return Campaign();
  // The office went with the lease; nothing is written on its behalf any more, and no
  // campaign retry is due until the host is back.
  timer_->Stop();
  if (campaign_) member_->etcd().Cancel(campaign_);
  campaign_ = 0;
  campaign_lease_ = 0;
  if (leading_)
    StandDown("cut off from etcd: " + member_->Describe()["last_error"].get<std::string>(), false);
}

void FleetLeader::Campaign() {
  // Again on reconnect; and never while leading (a campaign retry timer that fired late).
  if (member_->state() != FleetMember::State::kConnected || leading_) return;
  int64_t lease = member_->lease();
  if (campaign_ && campaign_lease_ == lease) return;  // already in line on this lease
  if (campaign_) member_->etcd().Cancel(campaign_);
  campaign_lease_ = lease;
  const FleetConfig& c = member_->config();
  // Answered once this host leads: until then the stream waits in etcd.
  campaign_ = member_->etcd().Campaign(
      ElectionName(c.name), lease, c.host, [this, alive = alive_, lease](Status s, EtcdLeader l) {
        if (!*alive || lease != campaign_lease_) return;
        campaign_ = 0;
        if (!s.ok()) {
          spdlog::warn("fleet {}: campaign ended: {}", member_->config().name, s.message());
          // Still seated: in line again after a pause; cut off: on reconnect.
          if (member_->state() == FleetMember::State::kConnected)
            timer_->Start(member_->config().lease_ttl_s * 1000 / 3, [this] { Campaign(); });
          campaign_lease_ = 0;
          return;
        }
        Elected(l);
      });
}

void FleetLeader::Elected(const EtcdLeader& leader) {
  leading_ = true;
  epoch_ = leader.rev;
  leader_key_ = leader.key;
  since_ms_ = SystemClock::Get()->WallMs();
  const FleetConfig& c = member_->config();
  spdlog::info("fleet {}: {} leads (epoch {})", c.name, c.host, epoch_);
  audit_("fleet_leader",
         c.host + " leads fleet " + c.name + " with epoch " + std::to_string(epoch_));
  // What the first summary shows, then a summary every third of the TTL.
  Read([this, alive = alive_, epoch = epoch_](Status s, FleetRead r) {
    if (!*alive || !leading_ || epoch_ != epoch) return;
    if (s.ok()) last_read_ = std::move(r);
    Publish();
  });
}

void FleetLeader::Read(std::function<void(Status, FleetRead)> done) {
  member_->etcd().Txn({}, ReadOps(member_->config()), {}, [done](Status s, EtcdTxnResult t) {
    FleetRead r;
    if (s.ok()) s = FromRanges(t, &r);
    done(s, std::move(r));
  });
}

void FleetLeader::Publish() {
  const FleetConfig& c = member_->config();
  int64_t now = SystemClock::Get()->WallMs();
  nlohmann::json summary = FleetViewJson(c, last_read_, now);
  summary["published_by"] = {{"host", c.host}, {"epoch", epoch_}, {"at", now}};
  // Fenced: applied only while this host's leader key is the one its epoch names. No check of
  // the host's own view first: etcd's answer is the one that counts (a host stopped for longer
  // than its TTL still believes it leads when it wakes).
  int64_t epoch = epoch_;
  // Applied, it also reads what the next summary shows; refused, who leads instead.
  std::vector<EtcdOp> ops = ReadOps(c);
  ops.insert(ops.begin(), EtcdOp::Put(SummaryKey(c.name), summary.dump()));
  member_->etcd().Txn(
      {{leader_key_, "CREATE", "EQUAL", "", epoch}}, ops,
      {EtcdOp::Range(ElectionName(c.name) + "/", true)},
      [this, alive = alive_, epoch](Status s, EtcdTxnResult t) {
        if (!*alive) return;
        bool current = leading_ && epoch_ == epoch;
        int64_t every = member_->config().lease_ttl_s * 1000 / 3;
        if (s.ok() && !t.succeeded) {
          // Recorded even when the host has stood down meanwhile (its keep-alive may have
          // failed first): the refusal is what keeps a stale leader's write out.
          std::string now_leads = "nobody";
          if (const EtcdKv* l = t.ranges.empty() ? nullptr : LeaderOf(t.ranges[0]))
            now_leads = l->value + " (epoch " + std::to_string(l->create_revision) + ")";
          ++refused_;
          last_refused_ =
              "a write with epoch " + std::to_string(epoch) +
              " was refused: the office is no longer this host's; now leading: " + now_leads;
          audit_("fleet_leader_fenced", last_refused_);
          if (current) StandDown(last_refused_, true);
          return;
        }
        if (!current) return;
        if (!s.ok()) {
          // Not answered: the member's keep-alive judges the connection; try again.
          spdlog::warn("fleet {}: summary not written: {}", member_->config().name, s.message());
          timer_->Start(every, [this] { Publish(); });
          return;
        }
        ++published_;
        FleetRead read;
        if (FromRanges(t, &read).ok()) last_read_ = std::move(read);
        timer_->Start(every, [this] { Publish(); });
      });
}

void FleetLeader::StandDown(const std::string& why, bool campaign_again) {
  const FleetConfig& c = member_->config();
  spdlog::warn("fleet {}: {} no longer leads (epoch {}): {}", c.name, c.host, epoch_, why);
  if (!campaign_again) audit_("fleet_leader_lost", why);
  leading_ = false;
  leader_key_.clear();
  timer_->Stop();
  // Still seated: in line again (a new key, so a later epoch if elected).
  if (campaign_again && member_->state() == FleetMember::State::kConnected) {
    campaign_lease_ = 0;
    Campaign();
  }
}

}  // namespace guardian
