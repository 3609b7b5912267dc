#pragma once
// Config: guardian.yaml parsed and validated against its schema. Loading never throws; every
// problem found becomes a ConfigError naming file, line and column (1-based), and loading goes
// on to report all of them, not just the first. The loaded Config is immutable and shared.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/params.h"
#include "daemon/run_as.h"

namespace guardian {

struct ConfigError {
  std::string file;
  int line = 0;  // 1-based; 0 when the error concerns the whole file (unreadable)
  int col = 0;   // 1-based
  std::string message;
  // "FILE:LINE:COL: message" (or "FILE: message" when line is 0).
  std::string ToString() const;
};

// How many disruptive actions (playbook attempts) one check may spend in a sliding window.
struct Budget {
  int max_actions = 5;
  int64_t window_ms = 3'600'000;
};

// Retry pacing between attempts of one incident: base * 2^(n-1), capped.
struct RetryPolicy {
  int64_t backoff_base_ms = 1'000;
  int64_t backoff_max_ms = 30'000;
};

// Limits every playbook run gets unless its playbook file asks for a shorter timeout.
struct PlaybookLimits {
  int64_t instructions = 10'000'000;  // per phase
  int64_t memory_bytes = 32 << 20;    // per run (YAML key memory_mb)
  int64_t phase_timeout_ms = 30'000;  // wall clock per phase
  // The programs any check's playbook may start (daemon/program_policy.h); a check's own
  // `programs` replaces it. None: any but shells and launchers.
  std::optional<std::vector<std::string>> programs;
};

// The operator API: always on a Unix socket, optionally on TCP (loopback unless allow_remote).
struct ApiConfig {
  std::string socket;                   // absolute; defaults to STATE_DIR/guardian.sock
  int socket_mode = 0660;               // owner and group may connect; others may not
  std::string socket_group;             // the socket file's group; empty = guardiand's own
  int64_t socket_gid = -1;              // socket_group resolved; -1 = unchanged
  std::string tcp;                      // "HOST:PORT" ("[::1]:PORT" for IPv6); empty = no TCP
  bool allow_remote = false;            // a non-loopback tcp address is refused unless true
  int max_connections = 256;            // beyond this, new connections are refused at once
  int64_t request_timeout_ms = 10'000;  // idle connections (slowloris) are dropped after this
  int64_t max_body_bytes = 65'536;      // larger request bodies get 413

  bool operator==(const ApiConfig&) const = default;
};

// Fleet mode (docs/fleet.md): guardiand on many hosts shares one etcd cluster for a
// fleet-wide budget of disruptive actions, one elected leader, and a view of every host.
struct FleetSlotBudget {
  int max_concurrent = 1;  // hosts that may run a disruptive playbook of the mode at once
  int min_healthy = 0;     // hosts that must stay healthy (no incident of it) meanwhile
  bool operator==(const FleetSlotBudget&) const = default;
};

struct FleetConfig {
  bool enabled = false;                // a `fleet:` section is present
  std::string name;                    // [a-z0-9_-]+; every key lives under /guardian/NAME/
  std::string host;                    // this host's id; defaults to its host name
  std::vector<std::string> endpoints;  // etcd client URLs, http:// or https://
  std::string ca_file;                 // TLS to etcd, all optional
  std::string cert_file;
  std::string key_file;
  int64_t lease_ttl_s = 10;           // a host gone this long loses its slots and its seat
  int64_t request_timeout_ms = 2000;  // each etcd request
  int64_t reconnect_base_ms = 1000;   // cut off: retried after base * 2^n, with jitter,
  int64_t reconnect_max_ms = 60'000;  // at most this
  FleetSlotBudget default_budget;     // modes `budgets` does not name
  std::map<std::string, FleetSlotBudget> budgets;  // by mode

  const FleetSlotBudget& BudgetFor(const std::string& mode) const {
    auto it = budgets.find(mode);
    return it == budgets.end() ? default_budget : it->second;
  }
  bool operator==(const FleetConfig&) const = default;
};

// A process Guardian starts and supervises itself (`services:`): spawned as an argv vector in
// its own session, tracked by pid and start time, restarted with backoff that resets only after
// it stayed ready for `healthy_after_ms`.
struct ServiceConfig {
  std::string name;                        // unique, [a-z0-9_-]+; checks name it in params.service
  std::vector<std::string> argv;           // argv[0] is a path, or a name looked up in PATH
  std::string cwd;                         // absolute; defaults to the config file's folder
  std::map<std::string, std::string> env;  // added to a minimal environment (PATH, LANG)
  RunAs run_as;                            // `user`, `group`; nothing set: guardiand's own
  std::string status_file;  // where the service reports its state (JSON); empty = none
  std::string flags_file;   // where Guardian writes the service's control flags; empty = none
  std::string output;       // stdout and stderr go here; defaults to STATE_DIR/services/NAME.log
  int port_preferred = 0;   // 0 = the service has no port in the registry
  int port_lo = 0;          // the range a port_conflict may move it within
  int port_hi = 0;
  int64_t backoff_base_ms = 500;
  int64_t backoff_max_ms = 30'000;
  int64_t healthy_after_ms = 10'000;  // ready this long before the restart backoff resets
  int64_t stop_grace_ms = 5'000;      // SIGTERM, then SIGKILL after this
  bool stop_on_exit = true;           // guardiand stopping cleanly stops the service too
  // A memory cgroup folder (v1 or v2) the service is moved into as it starts, created when
  // missing; its OOM kills count for out_of_memory. memory_limit_mb (0: left as it is) is
  // written to it first.
  std::string cgroup;
  int64_t memory_limit_mb = 0;
  int line = 0;

  bool operator==(const ServiceConfig&) const = default;
};

struct CheckConfig {
  std::string id;              // unique, [a-z0-9_-]+
  std::string mode;            // one of the ten mode ids (daemon/modes.h)
  int64_t interval_ms;         // poll period
  int debounce;                // consecutive failing observations that confirm
  double jitter;               // fraction of interval added at random to each period, [0, 1)
  int64_t target_ms;           // MTTR target; defaults to the mode's
  std::string playbook;        // playbook name; defaults to the mode id
  std::optional<int> retries;  // overrides the playbook's `retries`
  Budget budget;               // defaults to the top-level budget
  Params params;               // validated against the mode's detector schema
  // Checks whose failure explains this one's (a root cause such as the network): while one of
  // them is failing, this check's incident is linked to it and runs no playbook of its own.
  std::vector<std::string> depends_on;
  // The programs its playbook starts (guardian.proc.run: on_fail, start, stop) run as this
  // user and group, with a minimal environment plus `env`.
  RunAs run_as;
  std::map<std::string, std::string> env;
  // The only programs its playbook may start (absolute paths): its own `programs`, else
  // playbook_limits.programs; none: any but shells and launchers (daemon/program_policy.h).
  std::optional<std::vector<std::string>> programs;
  int line = 0;  // where the check starts in the file, for messages
};

struct Config {
  std::string path;                        // absolute path of the file loaded
  std::string state_dir;                   // absolute
  std::vector<std::string> playbook_dirs;  // absolute
  std::string log_level = "info";          // trace|debug|info|warn|error
  bool observe = false;                    // `mode: observe`: detect and record, never act
  ApiConfig api;
  Budget budget;
  // The remediation breaker: playbook attempts across all checks; past it, observe-only until
  // the window has passed (docs/config.md, "breaker").
  Budget breaker{30, 60'000};
  RetryPolicy retry;
  PlaybookLimits playbook_limits;
  std::vector<CheckConfig> checks;
  std::vector<ServiceConfig> services;
  std::string port_registry;  // absolute; defaults to STATE_DIR/ports.json
  FleetConfig fleet;
  // Secret values the file holds (referenced with secret_file/secret_env, or literal in a field
  // known to hold one), for redaction from logs, the API and the store (daemon/redact.h).
  std::vector<std::string> secrets;

  const CheckConfig* FindCheck(std::string_view id) const;
  const ServiceConfig* FindService(std::string_view name) const;
};

struct ConfigLoad {
  std::shared_ptr<const Config> config;  // null when errors is non-empty
  std::vector<ConfigError> errors;
  // Loaded, but worth an operator's look (a secret file others may read, a secret too short
  // to redact).
  std::vector<ConfigError> warnings;
  bool ok() const { return errors.empty(); }
};

// Returns the parameter schema for a mode, or nullptr when no detector for it is built in.
using ParamSchemaLookup = std::function<const std::vector<ParamSpec>*(std::string_view mode)>;

// "HOST:PORT" or "[V6]:PORT" with a numeric address (or "localhost"), port 1..65535.
bool SplitHostPort(const std::string& text, std::string* host, int* port, std::string* why);
// 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackHost(const std::string& host);

// Loads and validates a file. Relative paths in it resolve against the file's folder.
ConfigLoad LoadConfigFile(const std::string& path, const ParamSchemaLookup& schemas);
// Same, from text; `file_name` is used in errors and `base_dir` resolves relative paths.
ConfigLoad LoadConfigText(std::string_view text, const std::string& file_name,
                          const std::string& base_dir, const ParamSchemaLookup& schemas);

}  // namespace guardian
