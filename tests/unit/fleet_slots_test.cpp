// FleetSlots against a real etcd: three hosts (each a FleetMember with its own slots) take turns
// under max_concurrent 1 in the order they asked, min_healthy holds one back, a dead host's slot
// goes with its lease, and a host cut off loses its grant.

#include "daemon/fleet_slots.h"

#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tests/unit/etcd_process.h"
#include "tests/unit/temp_dir.h"
#include "tests/unit/test_loop.h"

namespace guardian {
namespace {

TEST_CASE(
    "DecideSlot: the first max_concurrent in line, while min_healthy hosts stay without one") {
  FleetSlotBudget one{1, 0};
  CHECK(DecideSlot({"a", "b"}, "a", 3, one).granted);
  SlotDecision d = DecideSlot({"a", "c", "b"}, "b", 3, one);
  CHECK_FALSE(d.granted);
  CHECK(d.why == "2 host(s) ahead (a, c), max_concurrent 1");
  FleetSlotBudget two_keep_two{2, 2};
  CHECK(DecideSlot({"a", "b"}, "a", 4, two_keep_two).granted);  // 3 healthy
  CHECK(DecideSlot({"a", "b"}, "b", 4, two_keep_two).granted);  // 2 healthy
  d = DecideSlot({"a", "b"}, "b", 3, two_keep_two);
  CHECK_FALSE(d.granted);
  CHECK(d.why == "acting would leave 1 of 3 host(s) healthy, min_healthy 2");
  CHECK_FALSE(DecideSlot({"a"}, "b", 3, one).granted);  // not in line at all
}

EtcdEvent Deleted(const std::string& key) {
  EtcdEvent e;
  e.deleted = true;
  e.kv.key = key;
  return e;
}

EtcdEvent Put(const std::string& key) {
  EtcdEvent e;
  e.kv.key = key;
  return e;
}

TEST_CASE("TurnMayChange: only a release that moves this host within max_concurrent wakes it") {
  std::set<std::string> ahead = {"s/a", "s/b", "s/c"};
  // Keys made behind this host, or values rewritten, never move it forward.
  CHECK_FALSE(TurnMayChange(ahead, "s/d", {Put("s/e"), Put("s/a")}, 1));
  CHECK(ahead.size() == 3);
  // A release ahead that still leaves it beyond max_concurrent: no read of the line.
  CHECK_FALSE(TurnMayChange(ahead, "s/d", {Deleted("s/a")}, 1));
  CHECK(ahead == std::set<std::string>{"s/b", "s/c"});
  // A key that is not ahead of it (behind it, or already gone) changes nothing.
  CHECK_FALSE(TurnMayChange(ahead, "s/d", {Deleted("s/e"), Deleted("s/a")}, 1));
  // Two left ahead under max_concurrent 2 is still a wait; one left is its turn to read.
  CHECK_FALSE(TurnMayChange(ahead, "s/d", {}, 2));
  CHECK(TurnMayChange(ahead, "s/d", {Deleted("s/b")}, 2));
  CHECK(ahead == std::set<std::string>{"s/c"});
  // Its own key deleted always sends it to read (and make it again, or give up).
  std::set<std::string> many = {"s/a", "s/b"};
  CHECK(TurnMayChange(many, "s/d", {Deleted("s/d")}, 1));
  // Within max_concurrent already (waiting on min_healthy): any release ahead is a reason.
  std::set<std::string> one = {"s/a"};
  CHECK(TurnMayChange(one, "s/d", {Deleted("s/a")}, 2));
}

struct Host {
  std::unique_ptr<FleetMember> member;
  std::unique_ptr<FleetSlots> slots;
  std::optional<Status> got;
  std::string waiting;
};

struct Fleet {
  TestLoop t;
  EtcdProcess etcd;
  TempDir dir;
  std::vector<std::unique_ptr<Host>> hosts;

  explicit Fleet(FleetSlotBudget budget, int n = 3) {
    for (int i = 0; i < n; ++i) {
      FleetConfig c;
      c.enabled = true;
      c.name = "shop";
      c.host = std::string(1, static_cast<char>('a' + i));
      c.endpoints = {etcd.endpoint()};
      c.lease_ttl_s = 3;
      c.request_timeout_ms = 700;
      c.reconnect_base_ms = 100;
      c.reconnect_max_ms = 400;
      c.budgets["db_corruption"] = budget;
      auto h = std::make_unique<Host>();
      h->member = std::make_unique<FleetMember>(&t.loop, c, (dir.path / c.host).string(), nullptr);
      h->slots = std::make_unique<FleetSlots>(h->member.get());
      h->member->Start();
      hosts.push_back(std::move(h));
    }
    t.RunUntil([&] {
      for (auto& h : hosts)
        if (h->member->state() != FleetMember::State::kConnected) return false;
      return true;
    });
  }
  ~Fleet() {
    for (auto& h : hosts) {
      h->slots.reset();
      t.Close(*h->member);
    }
  }
  void Acquire(Host& h) {
    h.got.reset();
    h.waiting.clear();
    h.slots->Acquire(
        "db_corruption", "incident-1", [&h](Status s) { h.got = s; },
        [&h](const std::string& why) { h.waiting = why; });
  }
  // Asks for `h` and runs until it is answered (a grant, here).
  Status Granted(Host& h) {
    Acquire(h);
    t.RunUntil([&] { return h.got.has_value(); });
    return *h.got;
  }
  // Runs until `h` was told, or until it waits with `why` containing `part`.
  void UntilWaiting(Host& h, const std::string& part) {
    t.RunUntil([&] { return h.got.has_value() || h.waiting.find(part) != std::string::npos; });
  }
};

TEST_CASE("max_concurrent 1: three hosts act one after another, in the order they asked") {
  Fleet f(FleetSlotBudget{1, 0});
  Host& a = *f.hosts[0];
  Host& b = *f.hosts[1];
  Host& c = *f.hosts[2];
  REQUIRE(f.Granted(a).ok());
  CHECK(a.slots->Holds("db_corruption", "incident-1"));
  f.Acquire(b);
  f.UntilWaiting(b, "1 host(s) ahead (a)");
  f.Acquire(c);
  f.UntilWaiting(c, "2 host(s) ahead (a, b)");
  CHECK_FALSE(b.got.has_value());
  CHECK_FALSE(c.got.has_value());

  a.slots->Release("db_corruption", "incident-1");
  CHECK_FALSE(a.slots->Holds("db_corruption", "incident-1"));
  f.t.RunUntil([&] { return b.got.has_value(); });
  REQUIRE(b.got->ok());
  f.UntilWaiting(c, "1 host(s) ahead (b)");
  CHECK_FALSE(c.got.has_value());

  b.slots->Release("db_corruption", "incident-1");
  f.t.RunUntil([&] { return c.got.has_value(); });
  CHECK(c.got->ok());
  c.slots->Release("db_corruption", "incident-1");
}

TEST_CASE("min_healthy holds a host back even under max_concurrent") {
  Fleet f(FleetSlotBudget{2, 2});
  Host& a = *f.hosts[0];
  Host& b = *f.hosts[1];
  REQUIRE(f.Granted(a).ok());
  f.Acquire(b);
  f.UntilWaiting(b, "acting would leave 1 of 3 host(s) healthy, min_healthy 2");
  a.slots->Release("db_corruption", "incident-1");
  f.t.RunUntil([&] { return b.got.has_value(); });
  CHECK(b.got->ok());
  b.slots->Release("db_corruption", "incident-1");
}

TEST_CASE("a host that leaves frees its slot at once; one cut off loses its grant") {
  Fleet f(FleetSlotBudget{1, 0});
  Host& a = *f.hosts[0];
  Host& b = *f.hosts[1];
  REQUIRE(f.Granted(a).ok());
  f.Acquire(b);
  f.UntilWaiting(b, "1 host(s) ahead (a)");
  // a leaves (its lease is revoked): b is next without waiting out a's TTL.
  a.slots.reset();
  f.t.Close(*a.member);
  f.t.RunUntil([&] { return b.got.has_value(); });
  REQUIRE(b.got->ok());
  CHECK(b.slots->Holds("db_corruption", "incident-1"));

  // etcd goes: b is cut off, and its grant with it.
  f.etcd.Stop();
  f.t.RunUntil([&] { return b.member->state() == FleetMember::State::kCutOff; });
  CHECK_FALSE(b.slots->Holds("db_corruption", "incident-1"));
  std::optional<Status> refused;
  b.slots->Acquire("db_corruption", "incident-2", [&](Status s) { refused = s; });
  REQUIRE(refused.has_value());
  CHECK(refused->code() == Status::Code::kAborted);
  CHECK(refused->message().find("cut off from fleet shop") == 0);
  f.etcd.Start();
  f.t.RunUntil([&] { return b.member->state() == FleetMember::State::kConnected; });
  f.hosts.erase(f.hosts.begin());  // a is closed already
}

TEST_CASE("a waiting host whose key was deleted under its live lease takes its place again") {
  Fleet f(FleetSlotBudget{1, 0}, 2);
  Host& a = *f.hosts[0];
  Host& b = *f.hosts[1];
  REQUIRE(f.Granted(a).ok());
  f.Acquire(b);
  f.UntilWaiting(b, "1 host(s) ahead (a)");
  // What a late delete of b's own (an earlier request given back) does to its key.
  EtcdConfig ec;
  ec.endpoints = {f.etcd.endpoint()};
  EtcdClient raw(&f.t.loop, ec);
  std::optional<Status> s;
  raw.Delete(SlotsPrefix("shop", "db_corruption") + "b", false,
             [&](Status st, int64_t) { s = st; });
  f.t.RunUntil([&] { return s.has_value(); });
  REQUIRE(s->ok());
  a.slots->Release("db_corruption", "incident-1");
  f.t.RunUntil([&] { return b.got.has_value(); });
  CHECK(b.got->ok());
  b.slots->Release("db_corruption", "incident-1");
  f.t.Close(raw);
}

TEST_CASE("a slot given back and asked for again at once stays this host's") {
  Fleet f(FleetSlotBudget{1, 0}, 2);
  Host& a = *f.hosts[0];
  Host& b = *f.hosts[1];
  for (int i = 0; i < 3; ++i) {
    REQUIRE(f.Granted(a).ok());
    // The delete of the key is in flight when the key is wanted again: the new request must
    // not end up granted on a key that the delete then removes.
    a.slots->Release("db_corruption", "incident-1");
    REQUIRE(f.Granted(a).ok());
    f.Acquire(b);
    f.UntilWaiting(b, "1 host(s) ahead (a)");
    CHECK_FALSE(b.got.has_value());
    b.slots->Release("db_corruption", "incident-1");
    a.slots->Release("db_corruption", "incident-1");
  }
}

TEST_CASE("a host that dies frees its slot when its lease runs out") {
  Fleet f(FleetSlotBudget{1, 0}, 2);
  Host& b = *f.hosts[1];
  // A dead host's slot: made on a 2 s lease nobody keeps alive.
  EtcdConfig ec;
  ec.endpoints = {f.etcd.endpoint()};
  EtcdClient raw(&f.t.loop, ec);
  std::optional<Status> s;
  int64_t lease = 0;
  raw.LeaseGrant(2, [&](Status st, int64_t id) {
    s = st;
    lease = id;
  });
  f.t.RunUntil([&] { return s.has_value(); });
  s.reset();
  raw.Put(SlotsPrefix("shop", "db_corruption") + "dead", "{}", lease,
          [&](Status st, int64_t) { s = st; });
  f.t.RunUntil([&] { return s.has_value(); });
  f.Acquire(b);
  f.UntilWaiting(b, "1 host(s) ahead (dead)");
  f.t.RunUntil([&] { return b.got.has_value(); });  // within about the 2 s TTL
  CHECK(b.got->ok());
  b.slots->Release("db_corruption", "incident-1");
  f.t.Close(raw);
}

}  // namespace
}  // namespace guardian
