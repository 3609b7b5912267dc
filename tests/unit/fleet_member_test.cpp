// FleetMember against a real etcd: joining, keeping the seat past its TTL, a duplicate host id
// refused, cut off when etcd goes and back when it returns, a crashed guardiand's old lease
// revoked at start, and a clean leave freeing the seat at once.

#include "daemon/fleet_member.h"

#include <doctest/doctest.h>

#include <fstream>
#include <optional>
#include <string>

#include "tests/unit/etcd_process.h"
#include "tests/unit/temp_dir.h"
#include "tests/unit/test_loop.h"

namespace guardian {
namespace {

FleetConfig Config(const EtcdProcess& etcd, const std::string& host = "web-1") {
  FleetConfig c;
  c.enabled = true;
  c.name = "shop";
  c.host = host;
  c.endpoints = {etcd.endpoint()};
  c.lease_ttl_s = 2;
  c.request_timeout_ms = 500;
  c.reconnect_base_ms = 100;
  c.reconnect_max_ms = 400;
  return c;
}

// Runs the loop for `ms` of wall time (timers and answers keep coming meanwhile).
void RunFor(TestLoop& t, int64_t ms) {
  Timer tick(&t.loop);
  bool done = false;
  tick.Start(ms, [&] { done = true; });
  t.RunUntil([&] { return done; });
}

std::optional<EtcdKv> ReadKey(TestLoop& t, EtcdClient& c, const std::string& key) {
  std::optional<Status> s;
  std::vector<EtcdKv> kvs;
  c.Get(key, false, [&](Status st, std::vector<EtcdKv> v, int64_t) {
    s = st;
    kvs = std::move(v);
  });
  t.RunUntil([&] { return s.has_value(); });
  REQUIRE_MESSAGE(s->ok(), s->message());
  if (kvs.empty()) return std::nullopt;
  return kvs[0];
}

TEST_CASE("reconnect delays double from the base up to the cap, with jitter in the upper half") {
  CHECK(ReconnectDelayMs(0, 1000, 60000, 0.0) == 500);
  CHECK(ReconnectDelayMs(0, 1000, 60000, 0.999) == 999);
  CHECK(ReconnectDelayMs(1, 1000, 60000, 0.0) == 1000);
  CHECK(ReconnectDelayMs(5, 1000, 60000, 0.0) == 16000);
  CHECK(ReconnectDelayMs(6, 1000, 60000, 0.0) == 30000);  // 64 s capped at 60
  CHECK(ReconnectDelayMs(100, 1000, 60000, 0.5) == 45000);
}

TEST_CASE("a host joins, keeps its seat past the TTL, and frees it when it leaves") {
  TestLoop t;
  EtcdProcess etcd;
  TempDir dir;
  std::string lease_file = (dir.path / "fleet-lease").string();
  FleetMember m(&t.loop, Config(etcd), lease_file, [] { return nlohmann::json{{"open", 3}}; });
  m.Start();
  t.RunUntil([&] { return m.state() == FleetMember::State::kConnected; });
  REQUIRE(m.lease() != 0);
  CHECK(m.LeaseValid());
  auto seat = ReadKey(t, m.etcd(), "/guardian/shop/hosts/web-1");
  REQUIRE(seat.has_value());
  CHECK(seat->lease == m.lease());
  auto value = nlohmann::json::parse(seat->value);
  CHECK(value["open"] == 3);
  int64_t first_beat = value["heartbeat_at"];

  RunFor(t, 3000);  // longer than the 2 s TTL: only the heartbeats keep it
  CHECK(m.state() == FleetMember::State::kConnected);
  CHECK(m.LeaseValid());  // each keep-alive moved its deadline on
  seat = ReadKey(t, m.etcd(), "/guardian/shop/hosts/web-1");
  REQUIRE(seat.has_value());
  CHECK(nlohmann::json::parse(seat->value)["heartbeat_at"].get<int64_t>() > first_beat);
  RunFor(t, 50);  // the lease file is written on the pool
  std::ifstream f(lease_file);
  int64_t saved = 0;
  f >> saved;
  CHECK(saved == m.lease());

  // A second guardiand with the same host id gets no seat while the first holds it.
  FleetMember twin(&t.loop, Config(etcd), (dir.path / "twin-lease").string(), nullptr);
  twin.Start();
  t.RunUntil([&] { return twin.state() == FleetMember::State::kCutOff; });
  CHECK(twin.Describe()["last_error"].get<std::string>().find("is held by another guardiand") !=
        std::string::npos);
  t.Close(twin);
  CHECK(ReadKey(t, m.etcd(), "/guardian/shop/hosts/web-1")->lease == m.lease());

  // Leaving revokes the lease: the seat is free at once, not after the TTL.
  EtcdConfig ec;
  ec.endpoints = {etcd.endpoint()};
  EtcdClient reader(&t.loop, ec);
  t.Close(m);
  CHECK_FALSE(ReadKey(t, reader, "/guardian/shop/hosts/web-1").has_value());
  t.Close(reader);
  CHECK_FALSE(std::filesystem::exists(lease_file));
}

TEST_CASE("cut off when etcd goes, back with a new lease when it returns") {
  TestLoop t;
  EtcdProcess etcd;
  TempDir dir;
  FleetMember m(&t.loop, Config(etcd), (dir.path / "lease").string(), nullptr);
  std::vector<FleetMember::State> changes;
  m.OnChange([&](FleetMember::State s) { changes.push_back(s); });
  m.Start();
  t.RunUntil([&] { return m.state() == FleetMember::State::kConnected; });
  int64_t before = m.lease();
  // A slow first answer on a loaded machine may already have cost a reconnect: count from here.
  int64_t reconnects = m.Describe()["reconnects"];
  changes.clear();

  etcd.Stop();
  t.RunUntil([&] { return m.state() == FleetMember::State::kCutOff; });
  CHECK(m.lease() == 0);  // a lease that may have expired is not used
  CHECK_FALSE(m.LeaseValid());
  CHECK_FALSE(m.Describe()["last_error"].get<std::string>().empty());
  RunFor(t, 600);  // several attempts while it is down, each failing
  CHECK(m.state() == FleetMember::State::kCutOff);

  etcd.Start();  // the same data: its old lease may still be there until it runs out
  t.RunUntil([&] { return m.state() == FleetMember::State::kConnected; });
  CHECK(m.lease() != 0);
  CHECK(m.lease() != before);
  CHECK(m.Describe()["reconnects"] == reconnects + 1);
  CHECK(ReadKey(t, m.etcd(), "/guardian/shop/hosts/web-1")->lease == m.lease());
  CHECK(changes == std::vector<FleetMember::State>{FleetMember::State::kCutOff,
                                                   FleetMember::State::kConnected});
  t.Close(m);
}

TEST_CASE("a guardiand started again revokes the lease its previous run left") {
  TestLoop t;
  EtcdProcess etcd;
  TempDir dir;
  std::string lease_file = (dir.path / "lease").string();
  EtcdConfig ec;
  ec.endpoints = {etcd.endpoint()};
  EtcdClient raw(&t.loop, ec);
  // The previous run: a seat on a long lease, its id in the lease file, then a crash.
  std::optional<Status> s;
  int64_t old = 0;
  raw.LeaseGrant(60, [&](Status st, int64_t id) {
    s = st;
    old = id;
  });
  t.RunUntil([&] { return s.has_value(); });
  s.reset();
  raw.Put("/guardian/shop/hosts/web-1", "{}", old, [&](Status st, int64_t) { s = st; });
  t.RunUntil([&] { return s.has_value(); });
  std::ofstream(lease_file) << old << "\n";

  FleetMember m(&t.loop, Config(etcd), lease_file, nullptr);
  m.Start();
  t.RunUntil([&] { return m.state() != FleetMember::State::kConnecting; });
  CHECK(m.state() == FleetMember::State::kConnected);  // at once, not after 60 s
  CHECK(ReadKey(t, raw, "/guardian/shop/hosts/web-1")->lease == m.lease());
  t.Close(m);
  t.Close(raw);
}

}  // namespace
}  // namespace guardian
