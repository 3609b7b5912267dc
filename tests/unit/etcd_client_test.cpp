// EtcdClient against a real etcd (tests/unit/etcd_process.h): keys, transactions that fence,
// leases, watches, elections, and moving to the next endpoint when one is down.

#include "daemon/etcd_client.h"

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

#include "daemon/base64.h"
#include "tests/unit/etcd_process.h"
#include "tests/unit/test_loop.h"

namespace guardian {
namespace {

EtcdConfig Endpoints(std::vector<std::string> endpoints) {
  EtcdConfig c;
  c.endpoints = std::move(endpoints);
  return c;
}

struct Fixture {
  TestLoop t;
  EtcdProcess etcd;
  EtcdClient client;
  // `down_first`: an endpoint tried before this etcd (one where nothing listens).
  explicit Fixture(const std::string& down_first = "")
      : client(&t.loop, Endpoints(down_first.empty()
                                      ? std::vector<std::string>{etcd.endpoint()}
                                      : std::vector<std::string>{down_first, etcd.endpoint()})) {}
  ~Fixture() { t.Close(client); }

  int64_t Put(const std::string& k, const std::string& v, int64_t lease = 0) {
    std::optional<Status> s;
    int64_t rev = 0;
    client.Put(k, v, lease, [&](Status st, int64_t r) {
      s = st;
      rev = r;
    });
    t.RunUntil([&] { return s.has_value(); });
    REQUIRE_MESSAGE(s->ok(), s->message());
    return rev;
  }
  std::vector<EtcdKv> Get(const std::string& k, bool prefix = false) {
    std::optional<Status> s;
    std::vector<EtcdKv> out;
    client.Get(k, prefix, [&](Status st, std::vector<EtcdKv> kvs, int64_t) {
      s = st;
      out = std::move(kvs);
    });
    t.RunUntil([&] { return s.has_value(); });
    REQUIRE_MESSAGE(s->ok(), s->message());
    return out;
  }
  int64_t Lease(int64_t ttl) {
    std::optional<Status> s;
    int64_t id = 0;
    client.LeaseGrant(ttl, [&](Status st, int64_t v) {
      s = st;
      id = v;
    });
    t.RunUntil([&] { return s.has_value(); });
    REQUIRE_MESSAGE(s->ok(), s->message());
    return id;
  }
};

TEST_CASE("base64 round-trips any bytes") {
  for (std::string s : {std::string(), std::string("a"), std::string("ab"), std::string("abc"),
                        std::string("\0\xff/x", 4)}) {
    CHECK(Base64Decode(Base64Encode(s)) == s);
  }
  CHECK(Base64Encode("foo") == "Zm9v");
  CHECK(Base64Encode("fo") == "Zm8=");
  CHECK(Base64Decode("Zg==") == std::string("f"));
  CHECK_FALSE(Base64Decode("Zm9").has_value());
  CHECK_FALSE(Base64Decode("Zm!v").has_value());
  CHECK_FALSE(Base64Decode("Zg=v").has_value());
  CHECK(EtcdClient::PrefixEnd("/a/") == "/a0");
  CHECK(EtcdClient::PrefixEnd(std::string("a\xff", 2)) == "b");
}

TEST_CASE("errors of both shapes the gateway answers are read without throwing") {
  using json = nlohmann::json;
  // A unary call's.
  Status s = EtcdClient::ErrorOf(json{{"error", "etcdserver: requested lease not found"},
                                      {"code", 5},
                                      {"message", "etcdserver: requested lease not found"}},
                                 404);
  CHECK(s.code() == Status::Code::kNotFound);
  CHECK(s.message() == "etcdserver: requested lease not found");
  // A stream's (watch, keep-alive): the error is an object.
  s = EtcdClient::ErrorOf(
      json{{"error", {{"grpc_code", 4}, {"http_code", 504}, {"message", "request timed out"}}}},
      200);
  CHECK(s.code() == Status::Code::kTimeout);
  CHECK(s.message() == "request timed out");
  // Odd shapes: no message, a number where text was expected.
  CHECK(EtcdClient::ErrorOf(json{{"error", 7}}, 503).message() == "HTTP 503");
  CHECK(EtcdClient::ErrorOf(json::object(), 500).code() == Status::Code::kIOError);
}

TEST_CASE("put, get by key and by prefix, delete: binary-safe keys and values") {
  Fixture f;
  std::string binary("v\0\xff", 3);
  int64_t r1 = f.Put("/g/a", "1");
  int64_t r2 = f.Put("/g/b", binary);
  f.Put("/h", "other");
  CHECK(r2 > r1);
  auto kvs = f.Get("/g/", true);
  REQUIRE(kvs.size() == 2);
  CHECK(kvs[0].key == "/g/a");
  CHECK(kvs[0].value == "1");
  CHECK(kvs[0].create_revision == r1);
  CHECK(kvs[1].value == binary);
  CHECK(f.Get("/g/a").size() == 1);
  CHECK(f.Get("/nothing").empty());

  std::optional<Status> s;
  f.client.Delete("/g/", true, [&](Status st, int64_t) { s = st; });
  f.t.RunUntil([&] { return s.has_value(); });
  CHECK(s->ok());
  CHECK(f.Get("/g/", true).empty());
  CHECK(f.Get("/h").size() == 1);
}

TEST_CASE("a transaction that compares a key's create revision fences a stale writer") {
  Fixture f;
  int64_t epoch = f.Put("/leader", "me");
  auto write = [&](int64_t my_epoch) {
    std::optional<Status> s;
    EtcdTxnResult r;
    f.client.Txn(
        {{"/leader", "CREATE", "EQUAL", "", my_epoch}},
        {EtcdOp::Put("/summary", "epoch " + std::to_string(my_epoch)), EtcdOp::Range("/summary")},
        {EtcdOp::Range("/leader")}, [&](Status st, EtcdTxnResult res) {
          s = st;
          r = std::move(res);
        });
    f.t.RunUntil([&] { return s.has_value(); });
    REQUIRE_MESSAGE(s->ok(), s->message());
    return r;
  };
  EtcdTxnResult ok = write(epoch);
  CHECK(ok.succeeded);
  REQUIRE(ok.ranges.size() == 1);
  REQUIRE(ok.ranges[0].size() == 1);
  CHECK(ok.ranges[0][0].value == "epoch " + std::to_string(epoch));

  // A new leader key (deleted and made again) has a newer create revision: the old epoch's
  // write is refused, and the failure branch says who holds it now.
  std::optional<Status> s;
  f.client.Delete("/leader", false, [&](Status st, int64_t) { s = st; });
  f.t.RunUntil([&] { return s.has_value(); });
  int64_t newer = f.Put("/leader", "someone else");
  EtcdTxnResult stale = write(epoch);
  CHECK_FALSE(stale.succeeded);
  REQUIRE(stale.ranges.size() == 1);
  CHECK(stale.ranges[0][0].create_revision == newer);
  CHECK(f.Get("/summary")[0].value == "epoch " + std::to_string(epoch));  // unchanged
}

TEST_CASE("a key on a lease lives while it is kept alive and goes with it") {
  Fixture f;
  int64_t lease = f.Lease(5);
  CHECK(lease != 0);
  f.Put("/slot", "host-a", lease);
  CHECK(f.Get("/slot")[0].lease == lease);

  std::optional<Status> s;
  int64_t ttl = 0;
  f.client.LeaseKeepAlive(lease, [&](Status st, int64_t v) {
    s = st;
    ttl = v;
  });
  f.t.RunUntil([&] { return s.has_value(); });
  REQUIRE_MESSAGE(s->ok(), s->message());
  CHECK(ttl == 5);

  s.reset();
  f.client.LeaseRevoke(lease, [&](Status st) { s = st; });
  f.t.RunUntil([&] { return s.has_value(); });
  CHECK(s->ok());
  CHECK(f.Get("/slot").empty());

  s.reset();
  f.client.LeaseKeepAlive(lease, [&](Status st, int64_t) { s = st; });
  f.t.RunUntil([&] { return s.has_value(); });
  CHECK(s->code() == Status::Code::kNotFound);
}

TEST_CASE("a watch streams puts and deletes under a prefix, in order, until cancelled") {
  Fixture f;
  std::vector<EtcdEvent> seen;
  std::optional<Status> ended;
  uint64_t id = f.client.Watch(
      "/w/", true, 0,
      [&](std::vector<EtcdEvent> batch, int64_t) {
        for (auto& e : batch) seen.push_back(std::move(e));
      },
      [&](Status s) { ended = s; });
  REQUIRE(id != 0);
  // The watch is created asynchronously: write until the first event shows it is live.
  int64_t first = 0;
  f.t.RunUntil([&] {
    if (!seen.empty()) return true;
    first = f.Put("/w/a", "1");
    uv_run(&f.t.loop, UV_RUN_NOWAIT);
    return !seen.empty();
  });
  f.Put("/w/b", "2");
  f.Put("/x", "not watched");
  std::optional<Status> s;
  f.client.Delete("/w/a", false, [&](Status st, int64_t) { s = st; });
  f.t.RunUntil([&] { return s.has_value() && seen.size() >= 3 && seen.back().deleted; });
  CHECK(seen.front().kv.key == "/w/a");
  CHECK(seen.front().kv.mod_revision <= first);
  CHECK(seen[seen.size() - 2].kv.key == "/w/b");
  CHECK(seen[seen.size() - 2].kv.value == "2");
  CHECK(seen.back().deleted);
  CHECK(seen.back().kv.key == "/w/a");
  for (const auto& e : seen) CHECK(e.kv.key != "/x");

  f.client.Cancel(id);
  size_t before = seen.size();
  f.Put("/w/c", "3");
  f.Put("/w/d", "4");  // a second round trip: an event of the first would have come by now
  CHECK(seen.size() == before);
  CHECK_FALSE(ended.has_value());  // a cancelled watch does not call back
}

TEST_CASE("a watch ends with an error when etcd goes away") {
  Fixture f;
  std::optional<Status> ended;
  f.client.Watch(
      "/w/", true, 0, [](std::vector<EtcdEvent>, int64_t) {}, [&](Status s) { ended = s; });
  f.Put("/w/a", "1");
  f.etcd.Stop();
  f.t.RunUntil([&] { return ended.has_value(); });
  CHECK_FALSE(ended->ok());
}

TEST_CASE("an election: the first campaign leads, the second waits until the first's lease goes") {
  Fixture f;
  int64_t a = f.Lease(30);
  int64_t b = f.Lease(30);
  std::optional<Status> sa, sb;
  EtcdLeader la, lb;
  f.client.Campaign("/fleet/leader", a, "host-a", [&](Status s, EtcdLeader l) {
    sa = s;
    la = std::move(l);
  });
  f.t.RunUntil([&] { return sa.has_value(); });
  REQUIRE_MESSAGE(sa->ok(), sa->message());
  CHECK(la.rev > 0);
  CHECK(la.lease == a);

  f.client.Campaign("/fleet/leader", b, "host-b", [&](Status s, EtcdLeader l) {
    sb = s;
    lb = std::move(l);
  });
  std::optional<Status> q;
  EtcdLeader now;
  f.client.Leader("/fleet/leader", [&](Status s, EtcdLeader l) {
    q = s;
    now = std::move(l);
  });
  f.t.RunUntil([&] { return q.has_value(); });
  REQUIRE(q->ok());
  CHECK(now.value == "host-a");
  CHECK(now.rev == la.rev);
  CHECK_FALSE(sb.has_value());  // still waiting

  std::optional<Status> r;
  f.client.LeaseRevoke(a, [&](Status s) { r = s; });  // host-a dies: its lease goes
  f.t.RunUntil([&] { return sb.has_value(); });
  REQUIRE_MESSAGE(sb->ok(), sb->message());
  CHECK(lb.rev > la.rev);  // the new epoch is higher

  q.reset();
  f.client.Leader("/fleet/leader", [&](Status s, EtcdLeader l) {
    q = s;
    now = std::move(l);
  });
  f.t.RunUntil([&] { return q.has_value(); });
  CHECK(now.value == "host-b");

  r.reset();
  f.client.Resign(lb, [&](Status s) { r = s; });
  f.t.RunUntil([&] { return r.has_value(); });
  CHECK(r->ok());
  q.reset();
  f.client.Leader("/fleet/leader", [&](Status s, EtcdLeader) { q = s; });
  f.t.RunUntil([&] { return q.has_value(); });
  CHECK(q->code() == Status::Code::kNotFound);
}

TEST_CASE("a down endpoint is passed over for the next; none up is an error naming one") {
  std::string dead = "http://127.0.0.1:" + std::to_string(FreeLoopbackPort());
  Fixture f(dead);
  // Two requests at the dead one at once: both move on to the live one, neither back.
  std::optional<Status> s1, s2;
  f.client.Put("/k1", "v", 0, [&](Status st, int64_t) { s1 = st; });
  f.client.Put("/k2", "v", 0, [&](Status st, int64_t) { s2 = st; });
  f.t.RunUntil([&] { return s1.has_value() && s2.has_value(); });
  CHECK_MESSAGE(s1->ok(), s1->message());
  CHECK_MESSAGE(s2->ok(), s2->message());
  CHECK(f.Put("/k", "v") > 0);
  CHECK(f.Get("/k").size() == 1);

  TestLoop t;
  EtcdClient lonely(&t.loop, Endpoints({dead}));
  std::optional<Status> s;
  lonely.Put("/k", "v", 0, [&](Status st, int64_t) { s = st; });
  t.RunUntil([&] { return s.has_value(); });
  CHECK(s->code() == Status::Code::kIOError);
  CHECK(s->message().find(dead + "/v3/kv/put: refused") == 0);
  t.Close(lonely);
}

}  // namespace
}  // namespace guardian
