#pragma once
// Store: Guardian's durable state in one SQLite database (WAL mode) under the state dir:
// incidents, their journaled steps, per-check key/values and holds. The schema is versioned
// with PRAGMA user_version and migrated forward only.
//
// Thread: a Store is synchronous and owned by one thread at a time. The daemon uses it only
// from the StoreThread; the CLI opens its own read-only Store. Never call it on the loop thread.

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "daemon/status.h"

namespace guardian {

class AuditChainVerifier;

// Incident states. Terminal: resolved, escalated.
inline constexpr const char* kStateOpen = "open";            // detected, not yet acting
inline constexpr const char* kStateRunning = "running";      // playbook attempt in progress
inline constexpr const char* kStateWaiting = "waiting";      // between attempts (backoff)
inline constexpr const char* kStateResolved = "resolved";    // verified healthy
inline constexpr const char* kStateEscalated = "escalated";  // gave up; check held

struct StepRecord {
  int64_t id = 0;
  int64_t incident_id = 0;
  int attempt = 0;
  std::string phase;  // backup|remediate|verify|rollback|probe|recover|budget|hold
  int64_t started_at = 0;
  int64_t ended_at = 0;  // 0 while running
  std::string status;    // running|ok|failed|skipped|interrupted
  std::string message;
};

struct IncidentRecord {
  int64_t id = 0;
  std::string check_id;
  std::string mode;
  std::string state = kStateOpen;
  int64_t onset_at = 0;      // first failing observation (wall ms)
  int64_t detected_at = 0;   // debounce confirmed (wall ms)
  int64_t recovered_at = 0;  // verified healthy (wall ms); 0 = not yet
  int64_t target_ms = 0;
  std::string playbook;
  int attempts = 0;
  std::string evidence;   // what the probe saw
  std::string reason;     // why it ended as it did
  int64_t caused_by = 0;  // the root cause's incident (depends_on); 0: none, or not known yet
  std::vector<StepRecord> steps;

  bool terminal() const;
  // The DESIGN.md incident JSON (mttd_ms, mttr_ms, within_target derived).
  nlohmann::json ToJson() const;
};

struct HoldRecord {
  std::string reason;
  int64_t since = 0;  // wall ms
};

// One entry of the audit trail: who (actor: api, guardiand, escalation, supervisor, or
// playbook:NAME) did what (kind). Rows are numbered 1, 2, 3... and hash-chained
// (daemon/audit_chain.h).
struct EventRecord {
  int64_t id = 0;  // set by AddEvent
  int64_t at = 0;  // wall ms
  std::string actor;
  std::string kind;  // hold|release|run|reload|reload_rejected|start|action|service_*
  std::string check_id;
  std::string detail;
  std::string hash;  // set by AddEvent
  nlohmann::json ToJson() const;
};

// One chaos/run run, as POST /v1/chaos-runs stored it: its times and verdict, and `summary`,
// the JSON object of what the report's trend needs (seed, counts, per-mode MTTD/MTTR).
struct ChaosRunRecord {
  int64_t id = 0;
  int64_t stored_at = 0;  // wall ms
  int64_t started_at = 0;
  int64_t ended_at = 0;
  bool ok = false;
  std::string summary;
  nlohmann::json ToJson() const;
};

// The store keeps this many chaos runs, the newest.
inline constexpr int64_t kChaosRunsKept = 500;

// What MTTR statistics need of one resolved incident.
struct RecoveryTime {
  std::string mode;
  int64_t mttd_ms = 0;
  int64_t mttr_ms = 0;
  int64_t target_ms = 0;
};

struct IncidentFilter {
  std::string check_id;
  std::string mode;
  std::string state;
  int64_t since = 0;  // onset_at >= since
  int limit = 100;
};

class Store {
 public:
  // Opens (creating and migrating unless read_only) the database at `path`.
  static Status Open(const std::string& path, bool read_only, std::unique_ptr<Store>* out);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  static int LatestSchemaVersion();
  int SchemaVersion();

  // Both insert with the record's id when it has one (the daemon numbers them itself, see
  // StoreThread), else with the next free one, which they set.
  Status InsertIncident(IncidentRecord* rec);
  Status UpdateIncident(const IncidentRecord& rec);
  Status InsertStep(StepRecord* step);
  // The highest incident and step ids ever given out (0 when none).
  Status LastIds(int64_t* incident, int64_t* step);
  Status FinishStep(const StepRecord& step);
  // Marks every step still `running` of incident `id` as interrupted; returns their phases.
  Status InterruptRunningSteps(int64_t incident_id, int64_t now, const std::string& why,
                               std::vector<StepRecord>* interrupted);

  Status GetIncident(int64_t id, std::optional<IncidentRecord>* out);
  Status ListIncidents(const IncidentFilter& filter, std::vector<IncidentRecord>* out);
  // Incidents not yet resolved or escalated, oldest first, with steps.
  Status UnfinishedIncidents(std::vector<IncidentRecord>* out);

  // Resolved incidents with onset at or after `since`, oldest first.
  Status RecoveryTimes(int64_t since, std::vector<RecoveryTime>* out);
  // Incidents per (mode, state) with onset at or after `since`.
  Status CountIncidents(int64_t since, std::map<std::pair<std::string, std::string>, int64_t>* out);

  // Appends `e` to the audit trail as the next row of the chain (its id and hash are set).
  Status AddEvent(const EventRecord& e);
  Status Events(int limit, std::vector<EventRecord>* out);  // newest first
  // Up to `limit` rows (-1: all) with id above `after_id`, in id order.
  Status AuditRows(int64_t after_id, int limit, std::vector<EventRecord>* out);
  // Feeds every row, in id order, to `verifier` until it finds the chain broken.
  Status VerifyAudit(AuditChainVerifier* verifier);

  Status AddChaosRun(ChaosRunRecord* run);  // sets run->id; keeps the newest kChaosRunsKept
  Status ChaosRuns(int limit, std::vector<ChaosRunRecord>* out);  // newest first

  Status SetValue(const std::string& check_id, const std::string& key, const std::string& value);
  Status Values(const std::string& check_id, std::map<std::string, std::string>* out);

  Status SetHold(const std::string& check_id, const std::string& reason, int64_t since);
  Status ClearHold(const std::string& check_id);
  Status Holds(std::map<std::string, HoldRecord>* out);

  Status IntegrityCheck();

  // True once after a call failed because the disk refused (full, I/O error, read-only): the
  // same write may succeed once the disk recovers. Clears the flag.
  bool TakeWriteFault();
  // Ends a transaction a failed call left open.
  void RollbackIfOpen();

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  Status Exec(const char* sql);
  Status Migrate();
  // Fills the steps of each incident in [begin, end).
  Status LoadSteps(IncidentRecord* begin, IncidentRecord* end);
  Status Error(const char* what);
  void NoteFailure();  // sets write_fault_ when the last SQLite error came from the disk
  // Sets the id and hash `row` gets as the next row of the audit chain.
  Status ChainEvent(EventRecord* row);
  // Migration 5: numbers and chains the rows an older guardiand wrote without hashes.
  Status SealUnchainedEvents();

  sqlite3* db_;
  bool write_fault_ = false;
};

}  // namespace guardian
