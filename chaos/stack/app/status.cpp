// The status document and its atomic, rate-limited writes.

#include "chaos/stack/app/status.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "chaos/stack/app/util.h"

namespace demoapp {

namespace {

nlohmann::json OptMs(const std::optional<int64_t>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

Status::Status(std::string file, std::string exe)
    : file_(std::move(file)), pid_(getpid()), exe_(std::move(exe)), started_at_(NowMs()) {}

void Status::SetPort(int port) {
  std::lock_guard lock(mu_);
  port_ = port;
  WriteLocked();
}

void Status::SetDbPath(const std::string& path) {
  std::lock_guard lock(mu_);
  db_path_ = path;
}

void Status::BootStart(std::vector<ChunkState> chunks) {
  std::lock_guard lock(mu_);
  boot_started_at_ = NowMs();
  chunks_ = std::move(chunks);
  WriteLocked();
}

void Status::ChunkStart(const std::string& name) {
  std::lock_guard lock(mu_);
  for (ChunkState& c : chunks_) {
    if (c.name == name) c.started_at = NowMs();
  }
  current_ = name;
  WriteLocked();
}

void Status::ChunkEnd(const std::string& name) {
  std::lock_guard lock(mu_);
  for (ChunkState& c : chunks_) {
    if (c.name == name) c.ended_at = NowMs();
  }
  current_.clear();
  WriteLocked();
}

void Status::Ready() {
  std::lock_guard lock(mu_);
  ready_at_ = NowMs();
  // A stop (or bind failure) that came first wins: the state never goes back.
  if (state_ == "booting") state_ = "ready";
  WriteLocked();
}

void Status::Stopping() {
  std::lock_guard lock(mu_);
  if (state_ != "failed") state_ = "stopping";
  WriteLocked();
}

void Status::BindFailed(const std::string& error, int port) {
  std::lock_guard lock(mu_);
  state_ = "failed";
  bind_ = {{"error", error}, {"port", port}, {"at", NowMs()}};
  WriteLocked();
}

void Status::SetFlags(const Flags& flags, const std::string& error) {
  std::lock_guard lock(mu_);
  flags_ = flags;
  flags_error_ = error;
  WriteLocked();
}

void Status::SetMemory(uint64_t cache_bytes, uint64_t leak_bytes, bool low_memory) {
  std::lock_guard lock(mu_);
  if (cache_bytes == cache_bytes_ && leak_bytes == leak_bytes_ && low_memory == low_memory_) return;
  cache_bytes_ = cache_bytes;
  leak_bytes_ = leak_bytes;
  low_memory_ = low_memory;
  WriteLocked();
}

void Status::DbOk(int64_t rows) {
  std::lock_guard lock(mu_);
  bool changed = !db_ok_ || (rows >= 0 && rows != db_rows_);
  db_ok_ = true;
  if (rows >= 0) db_rows_ = rows;
  if (changed) WriteLocked();
}

void Status::DbError(const std::string& code, const std::string& message) {
  std::lock_guard lock(mu_);
  db_ok_ = false;
  ++db_errors_;
  db_last_error_ = {{"code", code}, {"message", message}, {"at", NowMs()}};
  ErrorWriteLocked("db " + code + " " + message);
}

void Status::DiskError(const std::string& what, const std::string& message) {
  std::lock_guard lock(mu_);
  ++enospc_;
  disk_last_error_ = {{"what", what}, {"message", message}, {"at", NowMs()}};
  ErrorWriteLocked("disk " + what + " " + message);
}

void Status::UpstreamCall(const std::string& name, int64_t timeout_ms, bool ok, int64_t ms,
                          const std::string& kind, const std::string& message) {
  std::lock_guard lock(mu_);
  UpstreamStats& u = name == "backup" ? backup_ : primary_;
  ++u.requests;
  u.last_ms = ms;
  upstream_timeout_ms_ = timeout_ms;
  if (ok) {
    bool recovered = u.consecutive_failures > 0;
    u.consecutive_failures = 0;
    if (recovered) {
      WriteLocked();  // a watcher waits for this
    } else {
      dirty_ = true;  // counters only: the next Tick writes them
    }
    return;
  }
  ++u.failures;
  ++u.consecutive_failures;
  u.last_error = {{"kind", kind}, {"message", message.substr(0, 200)}, {"at", NowMs()}};
  ErrorWriteLocked("upstream " + name + " " + kind);
}

void Status::SetModelConfig(const std::string& url, const std::string& name, int64_t timeout_ms) {
  // Unconfigured reads as nulls and 0, whatever the defaults.
  std::string n = url.empty() ? "" : name;
  int64_t t = url.empty() ? 0 : timeout_ms;
  std::lock_guard lock(mu_);
  if (url == model_url_ && n == model_name_ && t == model_timeout_ms_) return;
  model_url_ = url;
  model_name_ = n;
  model_timeout_ms_ = t;
  WriteLocked();
}

void Status::ModelCall(bool ok, int64_t ms, const std::string& kind, const std::string& message) {
  std::lock_guard lock(mu_);
  ++model_.requests;
  model_.last_ms = ms;
  if (ok) {
    bool recovered = model_.consecutive_failures > 0;
    model_.consecutive_failures = 0;
    if (recovered) {
      WriteLocked();  // a watcher waits for this
    } else {
      dirty_ = true;  // counters only: the next Tick writes them
    }
    return;
  }
  ++model_.failures;
  ++model_.consecutive_failures;
  model_.last_error = {{"kind", kind}, {"message", message.substr(0, 200)}, {"at", NowMs()}};
  ErrorWriteLocked("model " + kind);
}

void Status::ConfigLoaded(bool ok, const std::string& error) {
  std::lock_guard lock(mu_);
  ++config_reloads_;
  if (ok) {
    config_loaded_at_ = NowMs();
    config_error_ = nullptr;
  } else {
    config_error_ = {{"message", error}, {"at", NowMs()}};
  }
  WriteLocked();
}

void Status::AuthRefused(int http_status) {
  std::lock_guard lock(mu_);
  ++auth_refused_;
  auth_ok_ = false;
  auth_last_refused_ = {{"status", http_status}, {"at", NowMs()}};
  ErrorWriteLocked("auth " + std::to_string(http_status));
}

void Status::AuthAccepted() {
  std::lock_guard lock(mu_);
  if (auth_ok_) return;
  auth_ok_ = true;
  WriteLocked();
}

void Status::ErrorWriteLocked(const std::string& key) {
  if (key == last_error_key_ && NowMs() - last_write_ < 100) {
    dirty_ = true;  // Tick() writes it once the 100 ms have passed
    return;
  }
  last_error_key_ = key;
  WriteLocked();
}

void Status::Tick() {
  std::lock_guard lock(mu_);
  if (dirty_ && NowMs() - last_write_ >= 100) WriteLocked();
}

std::string Status::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

std::string Status::current_chunk() const {
  std::lock_guard lock(mu_);
  return current_;
}

bool Status::chunk_skipped(const std::string& name) const {
  std::lock_guard lock(mu_);
  for (const ChunkState& c : chunks_) {
    if (c.name == name) return c.skipped;
  }
  return false;
}

nlohmann::json Status::ToJson() const {
  std::lock_guard lock(mu_);
  return ToJsonLocked();
}

static nlohmann::json UpstreamJson(const Status::UpstreamStats& u) {
  return {{"requests", u.requests},
          {"failures", u.failures},
          {"consecutive_failures", u.consecutive_failures},
          {"last_ms", u.last_ms},
          {"last_error", u.last_error}};
}

nlohmann::json Status::ToJsonLocked() const {
  using nlohmann::json;
  json chunks = json::array();
  bool any_skipped = false;
  for (const ChunkState& c : chunks_) {
    std::optional<int64_t> elapsed;
    if (c.started_at && c.ended_at) elapsed = *c.ended_at - *c.started_at;
    chunks.push_back({{"name", c.name},
                      {"critical", c.critical},
                      {"skipped", c.skipped},
                      {"started_at", OptMs(c.started_at)},
                      {"ended_at", OptMs(c.ended_at)},
                      {"ms", OptMs(elapsed)}});
    any_skipped = any_skipped || c.skipped;
  }
  json flags = FlagsToJson(flags_);
  flags["error"] = flags_error_.empty() ? json(nullptr) : json(flags_error_);
  bool degraded = any_skipped || !flags_.degraded_features.empty() || flags_.low_memory;
  json model = UpstreamJson(model_);
  model["url"] = model_url_.empty() ? json(nullptr) : json(model_url_);
  model["name"] = model_name_.empty() ? json(nullptr) : json(model_name_);
  model["timeout_ms"] = model_timeout_ms_;
  return {
      {"pid", pid_},
      {"exe", exe_},
      {"started_at", started_at_},
      {"updated_at", NowMs()},
      {"port", port_ ? json(*port_) : json(nullptr)},
      {"state", state_},
      {"boot",
       {{"started_at", boot_started_at_ ? json(boot_started_at_) : json(nullptr)},
        {"ready_at", OptMs(ready_at_)},
        {"current", current_.empty() ? json(nullptr) : json(current_)},
        {"chunks", chunks}}},
      {"flags", flags},
      {"degraded", degraded},
      {"memory",
       {{"cache_bytes", cache_bytes_}, {"leak_bytes", leak_bytes_}, {"low_memory", low_memory_}}},
      {"db",
       {{"path", db_path_},
        {"ok", db_ok_},
        {"rows", db_rows_},
        {"errors", db_errors_},
        {"last_error", db_last_error_}}},
      {"disk", {{"enospc", enospc_}, {"last_error", disk_last_error_}}},
      {"upstreams",
       {{"timeout_ms", upstream_timeout_ms_},
        {"primary", UpstreamJson(primary_)},
        {"backup", UpstreamJson(backup_)}}},
      {"model", model},
      {"config",
       {{"loaded_at", config_loaded_at_ ? json(config_loaded_at_) : json(started_at_)},
        {"reloads", config_reloads_},
        {"error", config_error_}}},
      {"auth",
       {{"ok", auth_ok_}, {"refused", auth_refused_}, {"last_refused", auth_last_refused_}}},
      {"bind", bind_},
  };
}

void Status::WriteLocked() {
  last_write_ = NowMs();
  dirty_ = false;
  // Replace, not throw, on bytes that are not UTF-8 (an error message quoting a bad file).
  std::string text =
      ToJsonLocked().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  int err = WriteFileAtomic(file_, text);
  if (err == ENOSPC) {
    // Counted, not retried here (see DiskError); the next change or Tick tries again.
    ++enospc_;
    disk_last_error_ = {
        {"what", "status"}, {"message", file_ + ": " + strerror(err)}, {"at", NowMs()}};
    dirty_ = true;
  }
}

}  // namespace demoapp
