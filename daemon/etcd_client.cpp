#include "daemon/etcd_client.h"

#include <cstdio>
#include <cstdlib>

#include "daemon/base64.h"

namespace guardian {
namespace {

using json = nlohmann::json;

// An answer that says no endpoint could be reached: worth trying the next one.
bool Unreachable(const HttpResult& r) {
  return r.error_kind == "refused" || r.error_kind == "unreachable" || r.error_kind == "timeout" ||
         r.error_kind == "dns";
}

// A field's text, or "" when it is missing or not a string (never throws).
std::string Text(const json& obj, const char* field) {
  auto it = obj.find(field);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int Code(const json& obj, const char* field) {
  auto it = obj.find(field);
  return it != obj.end() && it->is_number_integer() ? it->get<int>() : 0;
}

json OpJson(const EtcdOp& op) {
  json inner = {{"key", Base64Encode(op.key)}};
  switch (op.kind) {
    case EtcdOp::Kind::kPut:
      inner["value"] = Base64Encode(op.value);
      if (op.lease) inner["lease"] = std::to_string(op.lease);
      return {{"request_put", inner}};
    case EtcdOp::Kind::kDelete:
      if (op.prefix) inner["range_end"] = Base64Encode(EtcdClient::PrefixEnd(op.key));
      return {{"request_delete_range", inner}};
    case EtcdOp::Kind::kRange:
      if (op.prefix) inner["range_end"] = Base64Encode(EtcdClient::PrefixEnd(op.key));
      return {{"request_range", inner}};
  }
  return {};
}

std::vector<EtcdKv> ReadKvs(const json& body) {
  std::vector<EtcdKv> out;
  if (auto it = body.find("kvs"); it != body.end() && it->is_array())
    for (const auto& kv : *it) out.push_back(EtcdClient::ReadKv(kv));
  return out;
}

EtcdLeader ReadLeader(const json& kv) {
  EtcdLeader l;
  l.name = Base64Decode(kv.value("name", std::string())).value_or("");
  l.key = Base64Decode(kv.value("key", std::string())).value_or("");
  l.rev = EtcdClient::Int(kv, "rev");
  l.lease = EtcdClient::Int(kv, "lease");
  return l;
}

json LeaderJson(const EtcdLeader& l) {
  return {{"name", Base64Encode(l.name)},
          {"key", Base64Encode(l.key)},
          {"rev", std::to_string(l.rev)},
          {"lease", std::to_string(l.lease)}};
}

}  // namespace

// A stream in flight: its HTTP request, and the newline-delimited JSON not yet read.
struct EtcdClient::Stream {
  uint64_t http_id = 0;
  std::string partial;
  bool ended = false;
};

EtcdClient::EtcdClient(uv_loop_t* loop, EtcdConfig config)
    : config_(std::move(config)),
      http_(std::make_unique<HttpClient>(loop)),
      alive_(std::make_shared<bool>(true)) {}

EtcdClient::~EtcdClient() {
  if (http_) {
    std::fprintf(stderr, "EtcdClient destroyed without Close()\n");
    std::abort();
  }
}

int64_t EtcdClient::Int(const json& obj, const char* field) {
  auto it = obj.find(field);
  if (it == obj.end()) return 0;  // the gateway leaves out fields at their zero value
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) return std::strtoll(it->get<std::string>().c_str(), nullptr, 10);
  return 0;
}

// etcd's error answer as a Status. Unary calls answer {"error": TEXT, "code": N, "message":
// TEXT}; streams (watch, keep-alive) {"error": {"grpc_code": N, "http_code": N, "message":
// TEXT}}. gRPC code 5 is NOT_FOUND (a lease that expired), 4 DEADLINE_EXCEEDED.
Status EtcdClient::ErrorOf(const json& body, long http_code) {
  const json& e = body.contains("error") && body["error"].is_object() ? body["error"] : body;
  std::string message = Text(e, "message");
  if (message.empty()) message = Text(e, "error");
  if (message.empty()) message = "HTTP " + std::to_string(http_code);
  int code = Code(e, "code") ? Code(e, "code") : Code(e, "grpc_code");
  if (code == 5) return Status::NotFound(message);
  if (code == 4) return Status::Timeout(message);
  return Status::IOError(message);
}

EtcdKv EtcdClient::ReadKv(const json& kv) {
  EtcdKv out;
  out.key = Base64Decode(kv.value("key", std::string())).value_or("");
  out.value = Base64Decode(kv.value("value", std::string())).value_or("");
  out.create_revision = Int(kv, "create_revision");
  out.mod_revision = Int(kv, "mod_revision");
  out.version = Int(kv, "version");
  out.lease = Int(kv, "lease");
  return out;
}

std::string EtcdClient::PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    auto c = static_cast<unsigned char>(end.back());
    if (c < 0xff) {
      end.back() = static_cast<char>(c + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

json EtcdClient::TxnRequest(const std::vector<EtcdCompare>& compare,
                            const std::vector<EtcdOp>& success,
                            const std::vector<EtcdOp>& failure) {
  json body = {{"compare", json::array()}, {"success", json::array()}, {"failure", json::array()}};
  for (const auto& c : compare) {
    json j = {{"key", Base64Encode(c.key)}, {"target", c.target}, {"result", c.result}};
    if (c.target == "VALUE") {
      j["value"] = Base64Encode(c.value);
    } else if (c.target == "VERSION") {
      j["version"] = std::to_string(c.number);
    } else if (c.target == "CREATE") {
      j["create_revision"] = std::to_string(c.number);
    } else if (c.target == "MOD") {
      j["mod_revision"] = std::to_string(c.number);
    } else if (c.target == "LEASE") {
      j["lease"] = std::to_string(c.number);
    }
    body["compare"].push_back(std::move(j));
  }
  for (const auto& op : success) body["success"].push_back(OpJson(op));
  for (const auto& op : failure) body["failure"].push_back(OpJson(op));
  return body;
}

void EtcdClient::MoveOff(size_t index) {
  // Only when no other request moved on already: two failures at one endpoint must not move
  // the next request back onto it.
  if (current_ % config_.endpoints.size() == index % config_.endpoints.size()) current_ = index + 1;
}

HttpCall EtcdClient::Request(const std::string& path, std::string body, size_t index) const {
  HttpCall call;
  call.method = "POST";
  call.url = config_.endpoints[index % config_.endpoints.size()] + path;
  call.headers = {"Content-Type: application/json"};
  call.body = std::move(body);
  call.timeout_ms = config_.timeout_ms;
  call.max_body_bytes = 16 << 20;
  call.ca_file = config_.ca_file;
  call.cert_file = config_.cert_file;
  call.key_file = config_.key_file;
  return call;
}

void EtcdClient::Call(const std::string& path, json body, std::function<void(Status, json)> done) {
  if (!http_) return done(Status::Aborted("the etcd client is closed"), json());
  if (config_.endpoints.empty()) return done(Status::InvalidArgument("no etcd endpoints"), json());
  CallAt(current_, 0, path, body.dump(), std::move(done));
}

void EtcdClient::CallAt(size_t start, size_t attempt, std::string path, std::string body,
                        std::function<void(Status, json)> done) {
  size_t index = start + attempt;  // each endpoint once, from the current one
  HttpCall call = Request(path, body, index);
  std::string url = call.url;
  http_->Start(call, [this, alive = alive_, start, attempt, index, path, body, url,
                      done = std::move(done)](HttpResult r) mutable {
    if (!*alive) return;
    if (!r.ok()) {
      if (Unreachable(r)) MoveOff(index);  // down or cut off: the next one, for what follows
      if (Unreachable(r) && attempt + 1 < config_.endpoints.size()) {
        return CallAt(start, attempt + 1, std::move(path), std::move(body), std::move(done));
      }
      return done(Status::IOError(url + ": " + r.error_kind + " (" + r.error + ")"), json());
    }
    json answer = json::parse(r.body, nullptr, false);
    if (answer.is_discarded() || !answer.is_object()) {
      return done(Status::IOError(url + ": not JSON (HTTP " + std::to_string(r.code) + ")"),
                  json());
    }
    if (r.code != 200 || answer.contains("error")) return done(ErrorOf(answer, r.code), json());
    done(Status::OK(), std::move(answer));
  });
}

void EtcdClient::Put(const std::string& key, const std::string& value, int64_t lease,
                     RevisionDone done) {
  json body = {{"key", Base64Encode(key)}, {"value", Base64Encode(value)}};
  if (lease) body["lease"] = std::to_string(lease);
  Call("/v3/kv/put", std::move(body), [done = std::move(done)](Status s, json a) {
    done(s, s.ok() ? Int(a["header"], "revision") : 0);
  });
}

void EtcdClient::Get(const std::string& key, bool prefix, RangeDone done) {
  json body = {{"key", Base64Encode(key)}};
  if (prefix) body["range_end"] = Base64Encode(PrefixEnd(key));
  Call("/v3/kv/range", std::move(body), [done = std::move(done)](Status s, json a) {
    if (!s.ok()) return done(s, {}, 0);
    done(s, ReadKvs(a), Int(a["header"], "revision"));
  });
}

void EtcdClient::Delete(const std::string& key, bool prefix, RevisionDone done) {
  json body = {{"key", Base64Encode(key)}};
  if (prefix) body["range_end"] = Base64Encode(PrefixEnd(key));
  Call("/v3/kv/deleterange", std::move(body), [done = std::move(done)](Status s, json a) {
    done(s, s.ok() ? Int(a["header"], "revision") : 0);
  });
}

void EtcdClient::Txn(const std::vector<EtcdCompare>& compare, const std::vector<EtcdOp>& success,
                     const std::vector<EtcdOp>& failure, TxnDone done) {
  Call("/v3/kv/txn", TxnRequest(compare, success, failure),
       [done = std::move(done)](Status s, json a) {
         EtcdTxnResult r;
         if (!s.ok()) return done(s, r);
         r.succeeded = a.value("succeeded", false);
         r.revision = Int(a["header"], "revision");
         if (auto it = a.find("responses"); it != a.end() && it->is_array()) {
           for (const auto& resp : *it) {
             if (auto range = resp.find("response_range"); range != resp.end())
               r.ranges.push_back(ReadKvs(*range));
           }
         }
         done(s, std::move(r));
       });
}

void EtcdClient::LeaseGrant(int64_t ttl_s, RevisionDone done) {
  Call("/v3/lease/grant", {{"TTL", std::to_string(ttl_s)}},
       [done = std::move(done)](Status s, json a) { done(s, s.ok() ? Int(a, "ID") : 0); });
}

void EtcdClient::LeaseKeepAlive(int64_t lease, RevisionDone done) {
  // A one-message stream: the gateway answers {"result": {"ID", "TTL"}}; a TTL of 0 (left out)
  // means the lease is gone.
  Call("/v3/lease/keepalive", {{"ID", std::to_string(lease)}},
       [done = std::move(done)](Status s, json a) {
         if (!s.ok()) return done(s, 0);
         int64_t ttl = Int(a["result"], "TTL");
         if (ttl <= 0) return done(Status::NotFound("the lease has expired"), 0);
         done(s, ttl);
       });
}

void EtcdClient::LeaseRevoke(int64_t lease, Done done) {
  Call("/v3/lease/revoke", {{"ID", std::to_string(lease)}},
       [done = std::move(done)](Status s, json) { done(s); });
}

void EtcdClient::Leader(const std::string& election, LeaderDone done) {
  Call("/v3/election/leader", {{"name", Base64Encode(election)}},
       [done = std::move(done)](Status s, json a) {
         // The election's own "no leader" (nobody campaigns), not etcd's "etcdserver: no
         // leader" (no quorum), which stays an error.
         if (!s.ok() && s.message().find("election: no leader") != std::string::npos)
           return done(Status::NotFound(s.message()), EtcdLeader());
         if (!s.ok()) return done(s, EtcdLeader());
         auto kv = a.find("kv");
         if (kv == a.end()) return done(Status::NotFound("no leader"), EtcdLeader());
         EtcdKv k = ReadKv(*kv);
         EtcdLeader l;
         l.key = k.key;
         l.rev = k.create_revision;
         l.lease = k.lease;
         l.value = k.value;
         done(s, std::move(l));
       });
}

void EtcdClient::Resign(const EtcdLeader& leader, Done done) {
  Call("/v3/election/resign", {{"leader", LeaderJson(leader)}},
       [done = std::move(done)](Status s, json) { done(s); });
}

uint64_t EtcdClient::OpenStream(const std::string& path, json body,
                                std::function<bool(const json&)> message, Done end) {
  if (!http_) {
    end(Status::Aborted("the etcd client is closed"));
    return 0;
  }
  uint64_t id = next_stream_++;
  auto stream = std::make_shared<Stream>();
  streams_[id] = stream;
  size_t index = current_;
  HttpCall call = Request(path, body.dump(), index);
  call.timeout_ms = 0;  // it lasts as long as it is wanted
  call.connect_timeout_ms = config_.timeout_ms;
  call.max_body_bytes = 16 << 20;  // what may wait unread at once
  std::string url = call.url;
  auto finish = [this, alive = alive_, id, stream, end, index](Status s) {
    if (!*alive || stream->ended) return;
    stream->ended = true;
    streams_.erase(id);
    if (http_) http_->Cancel(stream->http_id);  // ended by a message: the transfer goes too
    if (!s.ok()) MoveOff(index);                // the next attempt goes elsewhere
    end(s);
  };
  call.on_data = [stream, message, finish, url](std::string_view data) {
    if (stream->ended) return;
    stream->partial.append(data);
    size_t nl;
    while (!stream->ended && (nl = stream->partial.find('\n')) != std::string::npos) {
      std::string line = stream->partial.substr(0, nl);
      stream->partial.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      json m = json::parse(line, nullptr, false);
      if (m.is_discarded() || !m.is_object()) return finish(Status::IOError(url + ": not JSON"));
      if (m.contains("error")) return finish(ErrorOf(m, 200));
      if (!message(m.contains("result") ? m["result"] : m)) return finish(Status::OK());
    }
  };
  stream->http_id = http_->Start(call, [finish, url](HttpResult r) {
    if (!r.ok()) return finish(Status::IOError(url + ": " + r.error_kind + " (" + r.error + ")"));
    finish(Status::IOError(url + ": the stream ended (HTTP " + std::to_string(r.code) + ")"));
  });
  // Start() may have failed at once and called `finish` already.
  return stream->ended ? 0 : id;
}

uint64_t EtcdClient::Watch(const std::string& key, bool prefix, int64_t start_revision,
                           std::function<void(std::vector<EtcdEvent>, int64_t)> events, Done end) {
  json create = {{"key", Base64Encode(key)}};
  if (prefix) create["range_end"] = Base64Encode(PrefixEnd(key));
  if (start_revision > 0) create["start_revision"] = std::to_string(start_revision);
  auto message = [events](const json& r) {
    if (r.value("canceled", false)) return false;  // compacted past start_revision, ...
    std::vector<EtcdEvent> batch;
    if (auto it = r.find("events"); it != r.end() && it->is_array()) {
      for (const auto& e : *it) {
        EtcdEvent ev;
        ev.deleted = e.value("type", std::string()) == "DELETE";
        if (auto kv = e.find("kv"); kv != e.end()) ev.kv = ReadKv(*kv);
        batch.push_back(std::move(ev));
      }
    }
    int64_t revision = r.contains("header") ? Int(r["header"], "revision") : 0;
    if (!batch.empty()) events(std::move(batch), revision);
    return true;
  };
  return OpenStream("/v3/watch", {{"create_request", create}}, message, [end](Status s) {
    end(s.ok() ? Status::Aborted("the watch was cancelled by etcd") : s);
  });
}

uint64_t EtcdClient::Campaign(const std::string& election, int64_t lease, const std::string& value,
                              LeaderDone done) {
  if (!http_) {
    done(Status::Aborted("the etcd client is closed"), EtcdLeader());
    return 0;
  }
  uint64_t id = next_stream_++;
  auto stream = std::make_shared<Stream>();
  streams_[id] = stream;
  json body = {{"name", Base64Encode(election)},
               {"lease", std::to_string(lease)},
               {"value", Base64Encode(value)}};
  size_t index = current_;
  HttpCall call = Request("/v3/election/campaign", body.dump(), index);
  call.timeout_ms = 0;  // it answers when this client leads
  call.connect_timeout_ms = config_.timeout_ms;
  std::string url = call.url;
  stream->http_id = http_->Start(call, [this, alive = alive_, id, stream, url, index,
                                        done = std::move(done)](HttpResult r) {
    if (!*alive || stream->ended) return;
    stream->ended = true;
    streams_.erase(id);
    if (!r.ok()) {
      MoveOff(index);
      return done(Status::IOError(url + ": " + r.error_kind + " (" + r.error + ")"), EtcdLeader());
    }
    json a = json::parse(r.body, nullptr, false);
    if (a.is_discarded() || !a.is_object()) return done(Status::IOError(url + ": not JSON"), {});
    if (r.code != 200 || a.contains("error")) return done(ErrorOf(a, r.code), EtcdLeader());
    EtcdLeader l = ReadLeader(a.value("leader", json::object()));
    done(Status::OK(), std::move(l));
  });
  return stream->ended ? 0 : id;
}

void EtcdClient::Cancel(uint64_t id) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  it->second->ended = true;
  if (http_) http_->Cancel(it->second->http_id);
  streams_.erase(it);
}

void EtcdClient::Close(std::function<void()> closed) {
  if (!http_) return closed();
  *alive_ = false;
  for (auto& [id, s] : streams_) s->ended = true;
  streams_.clear();
  auto* http = http_.release();
  http->Close([http, closed = std::move(closed)] {
    delete http;
    closed();
  });
}

}  // namespace guardian
