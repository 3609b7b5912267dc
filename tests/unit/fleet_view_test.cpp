// FleetViewJson: what GET /v1/fleet and the leader's summary make of etcd's keys, without etcd:
// the leader is the election key made first, heartbeats age from their time, and each mode's
// slots are listed in line order with those that may act under its budget.

#include <doctest/doctest.h>

#include "daemon/fleet_leader.h"
#include "daemon/fleet_slots.h"

namespace guardian {
namespace {

EtcdKv Kv(std::string key, std::string value, int64_t created, int64_t lease = 7) {
  EtcdKv kv;
  kv.key = std::move(key);
  kv.value = std::move(value);
  kv.create_revision = created;
  kv.lease = lease;
  return kv;
}

TEST_CASE("the fleet view: leader by first election key, heartbeat ages, slots in line") {
  FleetConfig c;
  c.name = "shop";
  c.budgets["default"] = {1, 0};
  c.budgets["db_corruption"] = {1, 2};
  FleetRead r;
  r.revision = 90;
  r.hosts = {Kv("/guardian/shop/hosts/web-1", R"({"heartbeat_at": 1000, "open_incidents": 2})", 5),
             Kv("/guardian/shop/hosts/web-2", R"({"heartbeat_at": 1500})", 6),
             Kv("/guardian/shop/hosts/web-3", "not json", 7)};
  // web-2 campaigned first: it leads, whatever order etcd listed the keys in.
  r.candidates = {Kv("/guardian/shop/leader/1a", "web-1", 40),
                  Kv("/guardian/shop/leader/2b", "web-2", 31)};
  // Two in line for process (max_concurrent 1 by default): web-3 asked first.
  r.slots = {Kv("/guardian/shop/slots/process/web-1", "{}", 60),
             Kv("/guardian/shop/slots/process/web-3", "{}", 55)};
  nlohmann::json v = FleetViewJson(c, r, 2000);
  CHECK(v["fleet"] == "shop");
  CHECK(v["revision"] == 90);
  CHECK(v["leader"]["host"] == "web-2");
  CHECK(v["leader"]["epoch"] == 31);
  REQUIRE(v["hosts"].size() == 3);
  CHECK(v["hosts"][0]["host"] == "web-1");
  CHECK(v["hosts"][0]["heartbeat_age_ms"] == 1000);
  CHECK(v["hosts"][0]["open_incidents"] == 2);
  CHECK(v["hosts"][0]["leader"] == false);
  CHECK(v["hosts"][1]["leader"] == true);
  CHECK(v["hosts"][2]["heartbeat_age_ms"] == -1);  // an unreadable seat shows, without a time
  REQUIRE(v["budgets"].size() == 2);               // db_corruption (configured), process
  CHECK(v["budgets"][0]["mode"] == "db_corruption");
  CHECK(v["budgets"][0]["min_healthy"] == 2);
  CHECK(v["budgets"][0]["in_line"].empty());
  CHECK(v["budgets"][1]["mode"] == "process");
  CHECK(v["budgets"][1]["in_line"] == nlohmann::json({"web-3", "web-1"}));
  CHECK(v["budgets"][1]["acting"] == nlohmann::json({"web-3"}));
  CHECK(v["summary"].is_null());

  r.candidates.clear();
  r.summary = {Kv("/guardian/shop/summary",
                  R"({"published_by": {"host": "web-2", "epoch": 31, "at": 1900}})", 80, 0)};
  v = FleetViewJson(c, r, 2000);
  CHECK(v["leader"].is_null());
  CHECK(v["summary"]["epoch"] == 31);
}

}  // namespace
}  // namespace guardian
