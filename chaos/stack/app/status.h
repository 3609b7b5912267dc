#pragma once
// The status document: everything the app reports about itself, kept in one place and written to
// RUNTIME/status.json (atomic rename) whenever something that matters changes. Guardian watches
// that file with inotify, so it is only rewritten on a change, never on a timer alone.

#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "chaos/stack/app/flags.h"

namespace demoapp {

struct ChunkState {
  std::string name;
  bool critical = false;
  bool skipped = false;
  std::optional<int64_t> started_at;
  std::optional<int64_t> ended_at;
};

class Status {
 public:
  Status(std::string file, std::string exe);

  void SetPort(int port);
  void SetDbPath(const std::string& path);
  void BootStart(std::vector<ChunkState> chunks);
  void ChunkStart(const std::string& name);
  void ChunkEnd(const std::string& name);
  void Ready();
  void Stopping();
  void BindFailed(const std::string& error, int port);
  void SetFlags(const Flags& flags, const std::string& error);
  void SetMemory(uint64_t cache_bytes, uint64_t leak_bytes, bool low_memory);

  // A database operation succeeded; `rows` < 0 when it did not count them.
  void DbOk(int64_t rows);
  void DbError(const std::string& code, const std::string& message);
  // An ENOSPC (or SQLITE_FULL); `what`: log, snapshot or db.
  void DiskError(const std::string& what, const std::string& message);

  struct UpstreamStats {
    int64_t requests = 0;
    int64_t failures = 0;
    int64_t consecutive_failures = 0;
    int64_t last_ms = 0;
    nlohmann::json last_error;  // null or {kind, message, at}
  };
  // A call to the upstream `name` ("primary" or "backup") made with `timeout_ms`: ok, or failed
  // with `kind` (timeout, unreachable, "status 503", ...).
  void UpstreamCall(const std::string& name, int64_t timeout_ms, bool ok, int64_t ms,
                    const std::string& kind, const std::string& message);
  // The upstream refused the app's credentials (401/403), or accepted them.
  void AuthRefused(int http_status);
  void AuthAccepted();

  // The model server in use (empty url: none configured), at start and on each reload.
  void SetModelConfig(const std::string& url, const std::string& name, int64_t timeout_ms);
  // A call to the model server: ok, or failed with `kind` (timeout, unreachable, "status 500",
  // bad answer).
  void ModelCall(bool ok, int64_t ms, const std::string& kind, const std::string& message);

  // The config file was (re)loaded: applied, or refused with `error` (the running one kept).
  void ConfigLoaded(bool ok, const std::string& error);

  // Writes a document held back by the rate limit. Called every ~100 ms.
  void Tick();

  std::string state() const;
  // The chunk running now, empty between chunks and after boot.
  std::string current_chunk() const;
  bool chunk_skipped(const std::string& name) const;

  nlohmann::json ToJson() const;

 private:
  nlohmann::json ToJsonLocked() const;
  void WriteLocked();
  // Writes now unless the same error as last time arrived within 100 ms of the last write.
  void ErrorWriteLocked(const std::string& key);

  const std::string file_;
  mutable std::mutex mu_;
  int64_t pid_;
  std::string exe_;
  int64_t started_at_;
  std::optional<int> port_;
  std::string state_ = "booting";

  int64_t boot_started_at_ = 0;
  std::optional<int64_t> ready_at_;
  std::string current_;
  std::vector<ChunkState> chunks_;

  Flags flags_;
  std::string flags_error_;

  UpstreamStats primary_, backup_;
  int64_t upstream_timeout_ms_ = 0;
  int64_t auth_refused_ = 0;
  int64_t config_loaded_at_ = 0;
  int64_t config_reloads_ = 0;
  nlohmann::json config_error_;  // null, or why the last reload was refused
  bool auth_ok_ = true;
  nlohmann::json auth_last_refused_;  // null or {status, at}

  std::string model_url_, model_name_;
  int64_t model_timeout_ms_ = 0;
  UpstreamStats model_;  // the same counters as an upstream's

  uint64_t cache_bytes_ = 0;
  uint64_t leak_bytes_ = 0;
  bool low_memory_ = false;

  std::string db_path_;
  bool db_ok_ = true;
  int64_t db_rows_ = 0;
  int64_t db_errors_ = 0;
  nlohmann::json db_last_error_;  // null or {code, message, at}

  int64_t enospc_ = 0;
  nlohmann::json disk_last_error_;

  nlohmann::json bind_;

  int64_t last_write_ = 0;
  std::string last_error_key_;
  bool dirty_ = false;
};

}  // namespace demoapp
