#pragma once
// EtcdClient: etcd's v3 API through its documented JSON gateway (POST /v3/...), with libcurl
// on the loop (HttpClient), so nothing here blocks. Keys and values are plain strings here and
// base64 on the wire; int64 fields come back as JSON strings and are read as numbers.
//
// Requests go to one endpoint at a time; one that cannot be reached (refused, unreachable,
// timed out) is left for the next, in turn, up to once round the list. A request that timed
// out may still have been applied: callers make their writes safe to repeat (transactions
// that compare first). Streams (watches, a campaign waiting to win) have no timeout; they end
// when cancelled, when the connection drops, or with the client.
//
// Thread: loop thread only. Close() ends every request and stream without calling them back.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/http_client.h"
#include "daemon/status.h"

namespace guardian {

struct EtcdConfig {
  std::vector<std::string> endpoints;  // "http://127.0.0.1:2379", "https://..."
  std::string ca_file;                 // TLS, all optional
  std::string cert_file;
  std::string key_file;
  int64_t timeout_ms = 2000;  // each unary request
};

struct EtcdKv {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

struct EtcdEvent {
  bool deleted = false;  // else a put
  EtcdKv kv;
};

// One comparison of a transaction: `target` is "VALUE", "VERSION", "CREATE" (create_revision),
// "MOD" or "LEASE"; `result` "EQUAL", "NOT_EQUAL", "GREATER" or "LESS".
struct EtcdCompare {
  std::string key;
  std::string target;
  std::string result = "EQUAL";
  std::string value;   // for VALUE
  int64_t number = 0;  // for the others
};

// One operation of a transaction: a put (with an optional lease), a delete, or a range read.
struct EtcdOp {
  enum class Kind { kPut, kDelete, kRange } kind = Kind::kPut;
  std::string key;
  std::string value;
  int64_t lease = 0;
  bool prefix = false;  // delete and range: every key starting with `key`

  static EtcdOp Put(std::string key, std::string value, int64_t lease = 0) {
    return {Kind::kPut, std::move(key), std::move(value), lease, false};
  }
  static EtcdOp Delete(std::string key, bool prefix = false) {
    return {Kind::kDelete, std::move(key), "", 0, prefix};
  }
  static EtcdOp Range(std::string key, bool prefix = false) {
    return {Kind::kRange, std::move(key), "", 0, prefix};
  }
};

struct EtcdTxnResult {
  bool succeeded = false;
  int64_t revision = 0;  // the store's revision after it
  // The kvs of each range op, in order, of the branch that ran.
  std::vector<std::vector<EtcdKv>> ranges;
};

// Who leads an election: the leader key's name and create revision, which fence its writes.
struct EtcdLeader {
  std::string name;
  std::string key;
  int64_t rev = 0;
  int64_t lease = 0;
  std::string value;
};

class EtcdClient {
 public:
  EtcdClient(uv_loop_t* loop, EtcdConfig config);
  ~EtcdClient();  // Close() first
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  using Done = std::function<void(Status)>;
  using RangeDone = std::function<void(Status, std::vector<EtcdKv>, int64_t revision)>;
  using RevisionDone = std::function<void(Status, int64_t)>;
  using TxnDone = std::function<void(Status, EtcdTxnResult)>;
  using LeaderDone = std::function<void(Status, EtcdLeader)>;

  // Unary calls. A Status other than ok means no answer or an error answer (its message is
  // etcd's: "etcdserver: requested lease not found").
  void Put(const std::string& key, const std::string& value, int64_t lease, RevisionDone done);
  void Get(const std::string& key, bool prefix, RangeDone done);
  void Delete(const std::string& key, bool prefix, RevisionDone done);
  void Txn(const std::vector<EtcdCompare>& compare, const std::vector<EtcdOp>& success,
           const std::vector<EtcdOp>& failure, TxnDone done);
  void LeaseGrant(int64_t ttl_s, RevisionDone done);      // the lease id
  void LeaseKeepAlive(int64_t lease, RevisionDone done);  // the TTL left; NotFound: gone
  void LeaseRevoke(int64_t lease, Done done);
  void Leader(const std::string& election, LeaderDone done);  // NotFound: no leader
  void Resign(const EtcdLeader& leader, Done done);

  // Streams; each returns an id for Cancel(), 0 when it could not start (`end` was called).
  // Watches `key` (or every key under it) from `start_revision` (0: from now). `events` gets
  // each batch; `end` is called once when the watch ends for any reason but Cancel().
  uint64_t Watch(const std::string& key, bool prefix, int64_t start_revision,
                 std::function<void(std::vector<EtcdEvent>, int64_t revision)> events, Done end);
  // Campaigns in `election` with `lease` (which must be alive) and `value`; `done` comes when
  // this client leads, or with the error that ended the campaign.
  uint64_t Campaign(const std::string& election, int64_t lease, const std::string& value,
                    LeaderDone done);
  void Cancel(uint64_t id);

  void Close(std::function<void()> closed);

  // Plain functions, for tests: the JSON a call sends, and a JSON answer read back.
  static nlohmann::json TxnRequest(const std::vector<EtcdCompare>& compare,
                                   const std::vector<EtcdOp>& success,
                                   const std::vector<EtcdOp>& failure);
  static EtcdKv ReadKv(const nlohmann::json& kv);
  static int64_t Int(const nlohmann::json& obj, const char* field);
  // etcd's error answer (a unary call's or a stream's shape) as a Status.
  static Status ErrorOf(const nlohmann::json& body, long http_code);
  // The end of every key that starts with `prefix` (etcd's range_end for a prefix).
  static std::string PrefixEnd(const std::string& prefix);

 private:
  struct Stream;
  // Sends `body` to `path`, trying the endpoints in turn; `done` gets the parsed answer.
  void Call(const std::string& path, nlohmann::json body,
            std::function<void(Status, nlohmann::json)> done);
  void CallAt(size_t start, size_t attempt, std::string path, std::string body,
              std::function<void(Status, nlohmann::json)> done);
  // The endpoint `index` failed: later requests start at the next one.
  void MoveOff(size_t index);
  uint64_t OpenStream(const std::string& path, nlohmann::json body,
                      std::function<bool(const nlohmann::json&)> message, Done end);
  HttpCall Request(const std::string& path, std::string body, size_t index) const;

  EtcdConfig config_;
  std::unique_ptr<HttpClient> http_;
  size_t current_ = 0;  // the endpoint that last answered
  uint64_t next_stream_ = 1;
  std::map<uint64_t, std::shared_ptr<Stream>> streams_;
  std::shared_ptr<bool> alive_;
};

}  // namespace guardian
