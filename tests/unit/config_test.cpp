// Config loader tests: every kind of bad config is reported with its exact file:line:col, all
// errors of a file are reported together, and defaults, paths and env expansion come out right.

#include "daemon/config.h"

#include <doctest/doctest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace guardian {
namespace {

namespace fs = std::filesystem;

// A small schema standing in for the detector registry: two modes have detectors, the rest none.
const std::vector<ParamSpec>* TestSchemas(std::string_view mode) {
  static const std::vector<ParamSpec> missing_config = {
      {"path", ParamType::kPath, true, "the watched YAML file"},
      {"required_keys", ParamType::kStringList, false, "dotted keys that must exist"},
      {"defaults_file", ParamType::kPath, false, "written when no good copy exists"},
      {"settle_ms", ParamType::kInt, false, "delay after a file event"},
      {"allow_paths", ParamType::kPathList, false, "extra writable folders"},
  };
  static const std::vector<ParamSpec> disk_full = {
      {"path", ParamType::kPath, true, "a path on the watched file system"},
      {"min_free_percent", ParamType::kNumber, false, "free space threshold"},
      {"inodes", ParamType::kBool, false, "also watch free inodes"},
      {"service", ParamType::kString, false, "the supervised service it concerns"},
      {"server", ParamType::kString, false, "a second service it acts on"},
      {"method", ParamType::kString, false, "how to look", {"statvfs", "df"}},
      {"headers", ParamType::kHeaders, false, "HTTP headers"},
      {"url", ParamType::kString, false, "an endpoint"},
      {"api_token", ParamType::kString, false, "a credential"},
      {"on_fail", ParamType::kCommand, false, "what the playbook runs"},
  };
  if (mode == "missing_config") return &missing_config;
  if (mode == "disk_full") return &disk_full;
  return nullptr;
}

ConfigLoad Load(std::string_view text) {
  return LoadConfigText(text, "g.yaml", "/etc/guardian", TestSchemas);
}

std::string AllErrors(const ConfigLoad& load) {
  std::string out;
  for (const auto& e : load.errors) out += e.ToString() + "\n";
  return out;
}

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// Asserts `load` failed with exactly one error, at line:col, whose message contains `part`.
void ExpectOneError(const ConfigLoad& load, int line, int col, std::string_view part) {
  INFO("errors:\n" << AllErrors(load));
  CHECK_FALSE(load.ok());
  CHECK(load.config == nullptr);
  REQUIRE(load.errors.size() == 1);
  const ConfigError& e = load.errors[0];
  CHECK(e.file == "g.yaml");
  CHECK(e.line == line);
  CHECK(e.col == col);
  CHECK(Contains(e.message, part));
  CHECK(e.ToString() ==
        "g.yaml:" + std::to_string(line) + ":" + std::to_string(col) + ": " + e.message);
}

// One valid check, for tests that break something else.
constexpr std::string_view kCheck =
    "checks:\n"
    "  - id: app\n"
    "    mode: missing_config\n"
    "    params: {path: /srv/app.yaml}\n";

std::string WithCheck(std::string_view before) { return std::string(before) + std::string(kCheck); }

// A check whose body lines (indented by 4) are `body`; the check starts on line 2.
std::string Check(std::string_view body) { return "checks:\n  - " + std::string(body); }

// Sets an environment variable for one test and restores it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// ---- bad config: one error each, at the exact place -------------------------------------------

TEST_CASE("YAML syntax error is one error at the parser's mark") {
  ExpectOneError(Load("state_dir: /x\nlog_level: a: b\n"), 2, 13, "YAML syntax error");
  ExpectOneError(Load("checks: [\n  {id: a\n"), 3, 1, "YAML syntax error");
}

// yaml-cpp 0.7's LoadAll loops forever, allocating, on a stray top-level ',' (yaml-cpp#1040).
TEST_CASE("a stray top-level comma is a syntax error, not a hang") {
  ExpectOneError(Load(", state_dir: /x\n"), 1, 1, "YAML syntax error: unexpected ','");
  ExpectOneError(Load("# comment\n,\nstate_dir: /x\n"), 2, 1, "YAML syntax error: unexpected ','");
  // In a second document it is found without parsing further than that document.
  ExpectOneError(Load(std::string(kCheck) + "---\n,\n"), 6, 1, "expected one YAML document");
}

TEST_CASE("deeply nested input is a syntax error, not a crash") {
  std::string deep = "checks: " + std::string(10000, '[');
  ConfigLoad load;
  CHECK_NOTHROW(load = Load(deep));
  CHECK_FALSE(load.ok());
  CHECK(load.errors.size() == 1);
}

TEST_CASE("empty file and top level that is not a mapping") {
  ExpectOneError(Load(""), 1, 1, "config is empty");
  ExpectOneError(Load("# only a comment\n"), 1, 1, "config is empty");
  ExpectOneError(Load("# list\n- a\n- b\n"), 2, 1, "top level must be a mapping");
  ExpectOneError(Load("just text\n"), 1, 1, "got \"just text\"");
}

TEST_CASE("more than one YAML document") {
  ExpectOneError(Load(std::string(kCheck) + "---\nstate_dir: /b\n"), 6, 1,
                 "expected one YAML document");
}

TEST_CASE("unknown top-level key, with a suggestion") {
  ConfigLoad load = Load(WithCheck("stat_dir: /x\n"));
  ExpectOneError(load, 1, 1, "unknown key 'stat_dir'");
  CHECK(Contains(load.errors[0].message, "did you mean 'state_dir'?"));
  // Nothing close: no suggestion.
  load = Load(WithCheck("zzzzzz: 1\n"));
  ExpectOneError(load, 1, 1, "unknown key 'zzzzzz'");
  CHECK_FALSE(Contains(load.errors[0].message, "did you mean"));
}

TEST_CASE("duplicate key in a mapping") {
  ExpectOneError(Load(WithCheck("log_level: info\nlog_level: warn\n")), 2, 1,
                 "duplicate key 'log_level' (first at line 1)");
}

TEST_CASE("unknown key inside a check") {
  ConfigLoad load =
      Load(Check("id: app\n"
                 "    mode: missing_config\n"
                 "    intervl_ms: 500\n"
                 "    params: {path: /x}\n"));
  ExpectOneError(load, 4, 5, "checks[0]: unknown key 'intervl_ms'");
  CHECK(Contains(load.errors[0].message, "did you mean 'interval_ms'?"));
}

TEST_CASE("wrong scalar type: string where an integer is needed") {
  std::string body =
      "id: app\n"
      "    mode: missing_config\n"
      "    params: {path: /x}\n";
  ExpectOneError(Load(Check(body + "    interval_ms: fast\n")), 5, 18,
                 "checks[0].interval_ms: expected an integer, got \"fast\"");
  // Quoted digits are a string: types are strict.
  ExpectOneError(Load(Check(body + "    interval_ms: \"500\"\n")), 5, 18,
                 "expected an integer, got \"500\"");
  ExpectOneError(Load(Check(body + "    interval_ms: \"1\\n2\"\n")), 5, 18,
                 "expected an integer, got \"1\\n2\"");  // one error, one line
  ExpectOneError(Load(Check(body + "    interval_ms: [1]\n")), 5, 18,
                 "expected an integer, got a sequence");
  // An empty value is blamed on its key, not on whatever token follows it.
  ExpectOneError(Load(Check(body + "    interval_ms:\n    debounce: 2\n")), 5, 5,
                 "expected an integer, got null");
}

TEST_CASE("float where an integer is needed") {
  ExpectOneError(Load(WithCheck("defaults:\n  interval_ms: 1.5\n")), 2, 16,
                 "defaults.interval_ms: expected an integer, got 1.5");
}

TEST_CASE("zero or negative interval") {
  ExpectOneError(Load(WithCheck("defaults: {interval_ms: 0}\n")), 1, 25,
                 "defaults.interval_ms: must be >= 10, got 0");
  ExpectOneError(Load(Check("id: app\n"
                            "    mode: missing_config\n"
                            "    interval_ms: -5\n"
                            "    params: {path: /x}\n")),
                 4, 18, "checks[0].interval_ms: must be >= 10, got -5");
}

TEST_CASE("debounce 0") {
  ExpectOneError(Load(WithCheck("defaults:\n  debounce: 0\n")), 2, 13,
                 "defaults.debounce: must be >= 1, got 0");
}

TEST_CASE("jitter out of range or not a number") {
  ExpectOneError(Load(WithCheck("defaults:\n  jitter: 1.0\n")), 2, 11,
                 "defaults.jitter: must be in [0, 1), got 1.0");
  ExpectOneError(Load(WithCheck("defaults:\n  jitter: -0.1\n")), 2, 11, "must be in [0, 1)");
  ExpectOneError(Load(WithCheck("defaults:\n  jitter: .nan\n")), 2, 11,
                 "expected a number, got \".nan\"");
}

TEST_CASE("missing id is reported at the check") {
  ExpectOneError(Load(Check("mode: missing_config\n"
                            "    params: {path: /x}\n")),
                 2, 5, "checks[0]: missing required key 'id'");
}

TEST_CASE("bad id characters") {
  ExpectOneError(Load(Check("id: App Config\n"
                            "    mode: missing_config\n"
                            "    params: {path: /x}\n")),
                 2, 9, "'App Config' is not a valid check id");
}

TEST_CASE("duplicate id is reported at the second, naming the first's line") {
  ExpectOneError(Load("checks:\n"
                      "  - id: app\n"
                      "    mode: missing_config\n"
                      "    params: {path: /a}\n"
                      "  - id: other\n"
                      "    mode: disk_full\n"
                      "    params: {path: /}\n"
                      "  - {id: app, mode: missing_config, params: {path: /b}}\n"),
                 8, 10, "duplicate check id 'app' (first defined at line 2)");
}

TEST_CASE("depends_on names other checks, later ones too, and never itself or a cycle") {
  ConfigLoad good = Load(
      "checks:\n"
      "  - {id: model, mode: missing_config, params: {path: /a}, depends_on: [net]}\n"
      "  - {id: net, mode: disk_full, params: {path: /}}\n");
  INFO(AllErrors(good));
  REQUIRE(good.ok());
  CHECK(good.config->checks[0].depends_on == std::vector<std::string>{"net"});
  CHECK(good.config->checks[1].depends_on.empty());

  ExpectOneError(Load("checks:\n"
                      "  - {id: model, mode: missing_config, params: {path: /a},\n"
                      "     depends_on: [network]}\n"
                      "  - {id: net, mode: disk_full, params: {path: /}}\n"),
                 3, 19, "no check with id 'network'");
  ExpectOneError(Load("checks:\n"
                      "  - {id: model, mode: missing_config, params: {path: /a},\n"
                      "     depends_on: [model]}\n"),
                 3, 19, "check 'model' cannot depend on itself");
  ExpectOneError(Load("checks:\n"
                      "  - {id: a, mode: missing_config, params: {path: /a}, depends_on: [b]}\n"
                      "  - {id: b, mode: missing_config, params: {path: /b}, depends_on: [c]}\n"
                      "  - {id: c, mode: missing_config, params: {path: /c}, depends_on: [a]}\n"),
                 2, 68, "depends_on makes a cycle: a -> b -> c -> a");
  ExpectOneError(Load("checks:\n"
                      "  - {id: a, mode: missing_config, params: {path: /a}, depends_on: b}\n"),
                 2, 67, "expected a sequence of strings");
}

TEST_CASE("missing mode") {
  ExpectOneError(Load(Check("id: app\n")), 2, 5, "checks[0]: missing required key 'mode'");
}

TEST_CASE("unknown mode lists the valid ids") {
  ConfigLoad load =
      Load(Check("id: app\n"
                 "    mode: mising_config\n"));
  ExpectOneError(load, 3, 11, "unknown mode 'mising_config' (did you mean 'missing_config'?)");
  CHECK(Contains(load.errors[0].message, "valid modes: db_corruption, port_conflict"));
  CHECK(Contains(load.errors[0].message, "model_server_down"));
}

TEST_CASE("mode without a detector in this build") {
  ExpectOneError(Load(Check("id: boot\n"
                            "    mode: slow_boot\n"
                            "    params: {anything: 1}\n")),
                 3, 11, "mode 'slow_boot' has no detector in this build");
  // An empty lookup means no detector at all.
  ConfigLoad load = LoadConfigText(kCheck, "g.yaml", "/etc", ParamSchemaLookup());
  ExpectOneError(load, 3, 11, "mode 'missing_config' has no detector in this build");
}

TEST_CASE("unknown param") {
  ConfigLoad load =
      Load(Check("id: app\n"
                 "    mode: missing_config\n"
                 "    params:\n"
                 "      path: /x\n"
                 "      requird_keys: [a]\n"));
  ExpectOneError(load, 6, 7, "unknown param 'requird_keys' for mode 'missing_config'");
  CHECK(Contains(load.errors[0].message, "did you mean 'required_keys'?"));
}

const char* const kDiskCheckHead =
    "id: disk\n"
    "    mode: disk_full\n"
    "    params:\n"
    "      path: /\n";

TEST_CASE("param of the wrong type") {
  std::string head =
      "id: app\n"
      "    mode: missing_config\n"
      "    params:\n"
      "      path: /x\n";
  ExpectOneError(Load(Check(head + "      required_keys: server.port\n")), 6, 22,
                 "checks[0].params.required_keys: expected a sequence of strings, got "
                 "\"server.port\"");
  ExpectOneError(Load(Check(head + "      required_keys: [a, {b: c}]\n")), 6, 26,
                 "checks[0].params.required_keys[1]: expected a string, got a mapping");
  ExpectOneError(Load(Check(head + "      settle_ms: 2.5\n")), 6, 18,
                 "checks[0].params.settle_ms: expected an integer");
  ExpectOneError(Load(Check(head + "      defaults_file: {a: 1}\n")), 6, 22,
                 "expected a path, got a mapping");
  std::string disk = kDiskCheckHead;
  ExpectOneError(Load(Check(disk + "      inodes: yes\n")), 6, 15,
                 "checks[0].params.inodes: expected true or false, got \"yes\"");
  ExpectOneError(Load(Check(disk + "      min_free_percent: ten\n")), 6, 25,
                 "expected a number, got \"ten\"");
}

TEST_CASE("a param with a fixed set of values names them when given another") {
  std::string disk = kDiskCheckHead;
  ExpectOneError(Load(Check(disk + "      method: ping\n")), 6, 15,
                 "checks[0].params.method: must be one of statvfs, df, got 'ping'");
  auto ok = Load(Check(disk + "      method: df\n"));
  REQUIRE(ok.ok());
  CHECK(guardian::ParamString(ok.config->checks[0].params, "method") == "df");
}

TEST_CASE("params that are not a mapping") {
  ExpectOneError(Load(Check("id: app\n"
                            "    mode: missing_config\n"
                            "    params: [path, /x]\n")),
                 4, 13, "checks[0].params: expected a mapping, got a sequence");
}

TEST_CASE("missing required param") {
  // At the params key when there is one...
  ExpectOneError(Load(Check("id: app\n"
                            "    mode: missing_config\n"
                            "    params:\n"
                            "      required_keys: [a]\n")),
                 4, 5, "missing required param 'path' for mode 'missing_config'");
  // ...and at the check when there is none.
  ExpectOneError(Load(Check("id: app\n"
                            "    mode: missing_config\n")),
                 2, 5, "checks[0].params: missing required param 'path'");
}

TEST_CASE("undefined environment variable") {
  ScopedEnv unset("GUARDIAN_TEST_UNDEFINED", nullptr);
  ExpectOneError(Load(WithCheck("state_dir: ${GUARDIAN_TEST_UNDEFINED}/state\n")), 1, 12,
                 "state_dir: environment variable 'GUARDIAN_TEST_UNDEFINED' is not set");
  ExpectOneError(Load(Check("id: app\n"
                            "    mode: missing_config\n"
                            "    params: {path: \"${GUARDIAN_TEST_UNDEFINED}/app.yaml\"}\n")),
                 4, 20, "environment variable 'GUARDIAN_TEST_UNDEFINED' is not set");
  ExpectOneError(Load(WithCheck("playbook_dirs: [a, \"${GUARDIAN_TEST_UNDEFINED\"]\n")), 1, 20,
                 "playbook_dirs[1]: unterminated '${'");
  ExpectOneError(Load(WithCheck("state_dir: ${1BAD}\n")), 1, 12,
                 "invalid environment variable name '1BAD'");
}

TEST_CASE("checks that are not a sequence, and a check that is not a mapping") {
  ExpectOneError(Load("checks:\n  id: app\n  mode: missing_config\n"), 2, 3,
                 "checks: expected a sequence of checks, got a mapping");
  ExpectOneError(Load("checks:\n  - app\n"), 2, 5, "checks[0]: expected a mapping, got \"app\"");
}

TEST_CASE("budget with a bad value, top level and per check") {
  ExpectOneError(Load(WithCheck("budget:\n  max_actions: 0\n")), 2, 16,
                 "budget.max_actions: must be >= 1, got 0");
  ExpectOneError(Load(WithCheck("budget: {window_ms: 999}\n")), 1, 21,
                 "budget.window_ms: must be >= 1000, got 999");
  ExpectOneError(Load(WithCheck("budget: [5]\n")), 1, 9,
                 "budget: expected a mapping, got a sequence");
  ExpectOneError(Load(Check("id: app\n"
                            "    mode: missing_config\n"
                            "    budget: {max_actions: many}\n"
                            "    params: {path: /x}\n")),
                 4, 27, "checks[0].budget.max_actions: expected an integer, got \"many\"");
}

TEST_CASE("breaker: read like a budget, refused the same way") {
  auto load = Load(WithCheck("breaker: {max_actions: 7, window_ms: 120000}\n"));
  INFO("errors:\n" << AllErrors(load));
  REQUIRE(load.ok());
  CHECK(load.config->breaker.max_actions == 7);
  CHECK(load.config->breaker.window_ms == 120'000);
  CHECK(load.config->budget.max_actions == 5);  // the per-check budget is its own
  ExpectOneError(Load(WithCheck("breaker:\n  max_actions: 0\n")), 2, 16,
                 "breaker.max_actions: must be >= 1, got 0");
  ExpectOneError(Load(WithCheck("breaker: {window: 5}\n")), 1, 11, "breaker: unknown key 'window'");
}

TEST_CASE("backoff_max_ms below backoff_base_ms") {
  ExpectOneError(Load(WithCheck("retry:\n  backoff_base_ms: 5000\n  backoff_max_ms: 1000\n")), 3,
                 19, "retry.backoff_max_ms: must be >= backoff_base_ms (5000), got 1000");
  // A base above the default cap is blamed on the base.
  ExpectOneError(Load(WithCheck("retry:\n  backoff_base_ms: 60000\n")), 2, 20,
                 "retry.backoff_base_ms: must be <= backoff_max_ms (30000 by default)");
}

TEST_CASE("log_level invalid") {
  ConfigLoad load = Load(WithCheck("log_level: verbose\n"));
  ExpectOneError(load, 1, 12, "log_level: must be one of trace, debug, info, warn, error");
  CHECK(Contains(load.errors[0].message, "got 'verbose'"));
  ExpectOneError(Load(WithCheck("log_level: inf\n")), 1, 12, "did you mean 'info'?");
}

TEST_CASE("playbook limits out of range") {
  ExpectOneError(Load(WithCheck("playbook_limits:\n  memory_mb: 2048\n")), 2, 14,
                 "playbook_limits.memory_mb: must be between 1 and 1024, got 2048");
  ExpectOneError(Load(WithCheck("playbook_limits: {instructions: 10}\n")), 1, 33,
                 "must be >= 1000, got 10");
  ExpectOneError(Load(WithCheck("playbook_limits: {phase_timeout_ms: 99}\n")), 1, 37,
                 "must be >= 100, got 99");
}

TEST_CASE("other per-check values out of range") {
  std::string body =
      "id: app\n"
      "    mode: missing_config\n"
      "    params: {path: /x}\n";
  ExpectOneError(Load(Check(body + "    retries: 11\n")), 5, 14,
                 "checks[0].retries: must be between 0 and 10, got 11");
  ExpectOneError(Load(Check(body + "    target_ms: 0\n")), 5, 16,
                 "checks[0].target_ms: must be >= 1, got 0");
  ExpectOneError(Load(Check(body + "    debounce: 99999999999\n")), 5, 15,
                 "must be <= 2147483647, got 99999999999");
  ExpectOneError(Load(Check(body + "    interval_ms: 99999999999999999999\n")), 5, 18,
                 "integer 99999999999999999999 is out of range");
  ExpectOneError(Load(Check(body + "    playbook: \"\"\n")), 5, 15, "playbook name is empty");
}

TEST_CASE("sequence and mapping swapped") {
  ExpectOneError(Load(WithCheck("playbook_dirs: {a: b}\n")), 1, 16,
                 "playbook_dirs: expected a sequence of paths, got a mapping");
  ExpectOneError(Load(WithCheck("playbook_dirs: playbooks\n")), 1, 16,
                 "expected a sequence of paths, got \"playbooks\"");
  ExpectOneError(Load(WithCheck("defaults: [1, 2]\n")), 1, 11,
                 "defaults: expected a mapping, got a sequence");
  ExpectOneError(Load(WithCheck("state_dir: [a]\n")), 1, 12, "expected a path, got a sequence");
  ExpectOneError(Load(WithCheck("playbook_dirs: []\n")), 1, 16, "must list at least one folder");
}

// ---- many errors in one file ------------------------------------------------------------------

TEST_CASE("every error of a file is reported, in file order") {
  ScopedEnv unset("GUARDIAN_TEST_UNDEFINED", nullptr);
  ConfigLoad load = Load(
      "state_dir: ${GUARDIAN_TEST_UNDEFINED}\n"            // 1
      "log_level: loud\n"                                  // 2
      "colour: blue\n"                                     // 3
      "retry: {backoff_base_ms: 10, backoff_max_ms: 5}\n"  // 4
      "checks:\n"                                          // 5
      "  - id: Bad!\n"                                     // 6
      "    mode: nope\n"                                   // 7
      "  - id: ok\n"                                       // 8
      "    mode: missing_config\n"                         // 9
      "    interval_ms: 1.5\n"                             // 10
      "    debounce: 0\n"                                  // 11
      "    params: {required_keys: a}\n"                   // 12
      "  - id: ok\n"                                       // 13
      "    mode: port_conflict\n");                        // 14
  INFO("errors:\n" << AllErrors(load));
  CHECK(load.config == nullptr);
  std::vector<std::string> expected = {
      "g.yaml:1:12: state_dir: environment variable 'GUARDIAN_TEST_UNDEFINED' is not set",
      "g.yaml:2:12: log_level: must be one of",
      "g.yaml:3:1: unknown key 'colour'",
      "g.yaml:4:46: retry.backoff_max_ms: must be >= backoff_base_ms (10), got 5",
      "g.yaml:6:9: checks[0].id: 'Bad!' is not a valid check id",
      "g.yaml:7:11: checks[0].mode: unknown mode 'nope'",
      "g.yaml:10:18: checks[1].interval_ms: expected an integer, got 1.5",
      "g.yaml:11:15: checks[1].debounce: must be >= 1, got 0",
      "g.yaml:12:5: checks[1].params: missing required param 'path'",
      "g.yaml:12:29: checks[1].params.required_keys: expected a sequence of strings",
      "g.yaml:13:9: checks[2].id: duplicate check id 'ok' (first defined at line 8)",
      "g.yaml:14:11: checks[2].mode: mode 'port_conflict' has no detector in this build",
  };
  REQUIRE(load.errors.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    CAPTURE(i);
    CHECK(load.errors[i].ToString().starts_with(expected[i]));
  }
}

// ---- good config ------------------------------------------------------------------------------

TEST_CASE("defaults for everything left out") {
  ConfigLoad load = Load(kCheck);
  INFO("errors:\n" << AllErrors(load));
  REQUIRE(load.ok());
  const Config& c = *load.config;
  CHECK(c.path == "/etc/guardian/g.yaml");
  CHECK(c.state_dir == "/var/lib/guardian");
  CHECK(c.playbook_dirs == std::vector<std::string>{"/etc/guardian/playbooks"});
  CHECK(c.log_level == "info");
  CHECK(c.budget.max_actions == 5);
  CHECK(c.budget.window_ms == 3'600'000);
  CHECK(c.breaker.max_actions == 30);
  CHECK(c.breaker.window_ms == 60'000);
  CHECK(c.retry.backoff_base_ms == 1'000);
  CHECK(c.retry.backoff_max_ms == 30'000);
  CHECK(c.playbook_limits.instructions == 10'000'000);
  CHECK(c.playbook_limits.memory_bytes == 32 << 20);
  CHECK(c.playbook_limits.phase_timeout_ms == 30'000);
  REQUIRE(c.checks.size() == 1);
  const CheckConfig& check = c.checks[0];
  CHECK(check.id == "app");
  CHECK(check.mode == "missing_config");
  CHECK(check.interval_ms == 1'000);
  CHECK(check.debounce == 1);
  CHECK(check.jitter == doctest::Approx(0.1));
  CHECK(check.target_ms == 10'000);  // missing_config's MTTR target
  CHECK(check.playbook == "missing_config");
  CHECK_FALSE(check.retries.has_value());
  CHECK(check.budget.max_actions == 5);
  CHECK(check.line == 2);
  CHECK(ParamString(check.params, "path") == "/srv/app.yaml");
  CHECK(check.params.count("required_keys") == 0);
}

TEST_CASE("empty sections count as absent, and no checks is valid") {
  ConfigLoad load = Load("checks:\ndefaults:\nbudget:\n");
  INFO("errors:\n" << AllErrors(load));
  REQUIRE(load.ok());
  CHECK(load.config->checks.empty());
  CHECK(load.config->budget.max_actions == 5);
}

TEST_CASE("every key set, and top-level defaults applied to checks that do not override") {
  ConfigLoad load = Load(
      "state_dir: /srv/guardian/\n"
      "playbook_dirs: [/usr/share/guardian/playbooks, local]\n"
      "log_level: debug\n"
      "defaults: {interval_ms: 250, debounce: 3, jitter: 0}\n"
      "budget: {max_actions: 2, window_ms: 60000}\n"
      "retry: {backoff_base_ms: 500, backoff_max_ms: 4000}\n"
      "playbook_limits: {instructions: 5000, memory_mb: 64, phase_timeout_ms: 1000}\n"
      "checks:\n"
      "  - id: app-config\n"
      "    mode: missing_config\n"
      "    params:\n"
      "      path: /srv/app/app.yaml\n"
      "      required_keys: [server.port, db.path]\n"
      "      settle_ms: 50\n"
      "  - id: disk_root\n"
      "    mode: disk_full\n"
      "    interval_ms: 5000\n"
      "    debounce: 2\n"
      "    jitter: 0.5\n"
      "    target_ms: 20000\n"
      "    playbook: my_disk\n"
      "    retries: 0\n"
      "    budget: {max_actions: 9}\n"
      "    params: {path: /, min_free_percent: 10, inodes: true}\n");
  INFO("errors:\n" << AllErrors(load));
  REQUIRE(load.ok());
  const Config& c = *load.config;
  CHECK(c.state_dir == "/srv/guardian");
  CHECK(c.playbook_dirs ==
        std::vector<std::string>{"/usr/share/guardian/playbooks", "/etc/guardian/local"});
  CHECK(c.log_level == "debug");
  CHECK(c.budget.max_actions == 2);
  CHECK(c.budget.window_ms == 60'000);
  CHECK(c.retry.backoff_base_ms == 500);
  CHECK(c.retry.backoff_max_ms == 4'000);
  CHECK(c.playbook_limits.instructions == 5'000);
  CHECK(c.playbook_limits.memory_bytes == int64_t{64} << 20);
  CHECK(c.playbook_limits.phase_timeout_ms == 1'000);
  REQUIRE(c.checks.size() == 2);

  const CheckConfig& app = c.checks[0];
  CHECK(app.line == 9);
  CHECK(app.interval_ms == 250);
  CHECK(app.debounce == 3);
  CHECK(app.jitter == 0.0);
  CHECK(app.target_ms == 10'000);
  CHECK(app.budget.max_actions == 2);
  CHECK(app.budget.window_ms == 60'000);
  CHECK(ParamList(app.params, "required_keys") ==
        std::vector<std::string>{"server.port", "db.path"});
  CHECK(ParamInt(app.params, "settle_ms", 30) == 50);

  const CheckConfig& disk = c.checks[1];
  CHECK(disk.line == 15);
  CHECK(disk.interval_ms == 5'000);
  CHECK(disk.debounce == 2);
  CHECK(disk.jitter == doctest::Approx(0.5));
  CHECK(disk.target_ms == 20'000);
  CHECK(disk.playbook == "my_disk");
  CHECK(disk.retries == 0);
  // A per-check budget overrides only the keys it sets; the rest come from the top level.
  CHECK(disk.budget.max_actions == 9);
  CHECK(disk.budget.window_ms == 60'000);
  CHECK(ParamString(disk.params, "path") == "/");
  CHECK(ParamNumber(disk.params, "min_free_percent", 0) == doctest::Approx(10.0));
  CHECK(ParamBool(disk.params, "inodes", false));

  CHECK(c.FindCheck("disk_root") == &disk);
  CHECK(c.FindCheck("app-config") == &app);
  CHECK(c.FindCheck("nope") == nullptr);
}

TEST_CASE("target_ms defaults to the mode's target") {
  ConfigLoad load = Load("checks:\n  - {id: d, mode: disk_full, params: {path: /var}}\n");
  REQUIRE(load.ok());
  CHECK(load.config->checks[0].target_ms == 45'000);
}

TEST_CASE("relative paths resolve against base_dir, lexically normalized") {
  ConfigLoad load = Load(
      "state_dir: state/./here/\n"
      "playbook_dirs: [../shared/playbooks, ./a/../b]\n"
      "checks:\n"
      "  - id: app\n"
      "    mode: missing_config\n"
      "    params: {path: app/app.yaml, defaults_file: ../defaults.yaml}\n");
  INFO("errors:\n" << AllErrors(load));
  REQUIRE(load.ok());
  const Config& c = *load.config;
  CHECK(c.state_dir == "/etc/guardian/state/here");
  CHECK(c.playbook_dirs == std::vector<std::string>{"/etc/shared/playbooks", "/etc/guardian/b"});
  CHECK(ParamString(c.checks[0].params, "path") == "/etc/guardian/app/app.yaml");
  CHECK(ParamString(c.checks[0].params, "defaults_file") == "/etc/defaults.yaml");
}

TEST_CASE("a relative base_dir is made absolute") {
  ConfigLoad load = LoadConfigText(kCheck, "g.yaml", "conf", TestSchemas);
  REQUIRE(load.ok());
  CHECK(load.config->playbook_dirs[0] == (fs::current_path() / "conf/playbooks").string());
}

TEST_CASE("a path list expands and resolves each entry and reports a bad one at its position") {
  setenv("GUARDIAN_TEST_EXTRA", "/srv/extra", 1);
  auto load = Load(
      "checks:\n"
      "  - id: app\n"
      "    mode: missing_config\n"
      "    params:\n"
      "      path: app.yaml\n"
      "      allow_paths:\n"
      "        - ${GUARDIAN_TEST_EXTRA}/a\n"
      "        - rel/../b\n");
  REQUIRE_MESSAGE(load.ok(), AllErrors(load));
  CHECK(ParamList(load.config->checks[0].params, "allow_paths") ==
        std::vector<std::string>{"/srv/extra/a", "/etc/guardian/b"});
  auto bad = Load(
      "checks:\n"
      "  - id: app\n"
      "    mode: missing_config\n"
      "    params:\n"
      "      path: app.yaml\n"
      "      allow_paths: [/ok, \"${GUARDIAN_TEST_UNSET_VAR}/x\"]\n");
  REQUIRE_FALSE(bad.ok());
  CHECK_MESSAGE(
      AllErrors(bad).find("g.yaml:6:26: checks[0].params.allow_paths[1]") != std::string::npos,
      AllErrors(bad));
  unsetenv("GUARDIAN_TEST_EXTRA");
}

TEST_CASE("environment expansion in paths") {
  ScopedEnv root("GUARDIAN_TEST_ROOT", "/srv/root");
  ScopedEnv rel("GUARDIAN_TEST_REL", "rel");
  ScopedEnv empty("GUARDIAN_TEST_EMPTY", "");
  ScopedEnv unset("GUARDIAN_TEST_UNDEFINED", nullptr);
  ConfigLoad load = Load(
      "state_dir: ${GUARDIAN_TEST_ROOT}/state\n"
      "playbook_dirs:\n"
      "  - ${GUARDIAN_TEST_UNDEFINED:-/opt/guardian}/playbooks\n"
      "  - ${GUARDIAN_TEST_EMPTY:-/fallback}\n"
      "  - ${GUARDIAN_TEST_REL}/pb\n"
      "  - /cost/$5/${GUARDIAN_TEST_EMPTY}x\n"
      "checks:\n"
      "  - id: app\n"
      "    mode: missing_config\n"
      "    params: {path: \"${GUARDIAN_TEST_ROOT}/app.yaml\"}\n");
  INFO("errors:\n" << AllErrors(load));
  REQUIRE(load.ok());
  const Config& c = *load.config;
  CHECK(c.state_dir == "/srv/root/state");
  CHECK(c.playbook_dirs == std::vector<std::string>{"/opt/guardian/playbooks", "/fallback",
                                                    "/etc/guardian/rel/pb", "/cost/$5/x"});
  CHECK(ParamString(c.checks[0].params, "path") == "/srv/root/app.yaml");
}

TEST_CASE("ToString formats") {
  CHECK(ConfigError{"a.yaml", 3, 7, "bad"}.ToString() == "a.yaml:3:7: bad");
  CHECK(ConfigError{"a.yaml", 0, 0, "cannot read"}.ToString() == "a.yaml: cannot read");
}

// ---- run mode and the operator API ------------------------------------------------------------

TEST_CASE("run mode: act by default, `mode: observe` sets observe") {
  ConfigLoad load = Load(kCheck);
  REQUIRE(load.ok());
  CHECK_FALSE(load.config->observe);

  load = Load(WithCheck("mode: observe\n"));
  INFO("errors:\n" << AllErrors(load));
  REQUIRE(load.ok());
  CHECK(load.config->observe);
  // The top-level run mode does not disturb a check's failure mode.
  CHECK(load.config->checks[0].mode == "missing_config");

  load = Load(WithCheck("mode: act\n"));
  REQUIRE(load.ok());
  CHECK_FALSE(load.config->observe);
}

TEST_CASE("run mode other than act or observe is refused, naming the field") {
  ConfigLoad load = Load(WithCheck("mode: banana\n"));
  ExpectOneError(load, 1, 7, "mode: must be one of act, observe, got 'banana'");
  CHECK(load.errors[0].message.starts_with("mode: "));
  load = Load(WithCheck("mode: Observe\n"));
  ExpectOneError(load, 1, 7, "got 'Observe' (did you mean 'observe'?)");
  ExpectOneError(Load(WithCheck("log_level: info\nmode: \"\"\n")), 2, 7,
                 "mode: must be one of act, observe, got ''");
  ExpectOneError(Load(WithCheck("mode: [observe]\n")), 1, 7,
                 "mode: expected a string, got a sequence");
  ExpectOneError(Load(WithCheck("mode:\n")), 1, 1, "mode: expected a string, got null");
}

TEST_CASE("api defaults: socket in the state dir, mode 0660, no TCP") {
  ConfigLoad load = Load(kCheck);
  REQUIRE(load.ok());
  const ApiConfig& api = load.config->api;
  CHECK(api.socket == "/var/lib/guardian/guardian.sock");
  CHECK(api.socket_mode == 0660);
  CHECK(api.tcp.empty());
  CHECK_FALSE(api.allow_remote);
  CHECK(api.max_connections == 256);
  CHECK(api.request_timeout_ms == 10'000);
  CHECK(api.max_body_bytes == 65'536);
  ApiConfig expected;
  expected.socket = "/var/lib/guardian/guardian.sock";
  CHECK(api == expected);

  // The default socket follows state_dir, wherever the api section sits in the file.
  load = Load(WithCheck("api:\n  max_connections: 8\nstate_dir: /srv/g/\n"));
  INFO("errors:\n" << AllErrors(load));
  REQUIRE(load.ok());
  CHECK(load.config->api.socket == "/srv/g/guardian.sock");
  CHECK(load.config->api.max_connections == 8);
  CHECK(load.config->api.socket_mode == 0660);

  load = Load(WithCheck("state_dir: state\n"));
  REQUIRE(load.ok());
  CHECK(load.config->api.socket == "/etc/guardian/state/guardian.sock");

  // An empty section is absent.
  load = Load(WithCheck("api:\n"));
  REQUIRE(load.ok());
  CHECK(load.config->api.socket == "/var/lib/guardian/guardian.sock");
}

TEST_CASE("api: every key set") {
  ConfigLoad load =
      Load(WithCheck("api:\n"
                     "  socket: run/../run/guardian.sock\n"
                     "  socket_mode: \"0600\"\n"
                     "  tcp: 127.0.0.1:9731\n"
                     "  allow_remote: false\n"
                     "  max_connections: 65536\n"
                     "  request_timeout_ms: 100\n"
                     "  max_body_bytes: 1024\n"));
  INFO("errors:\n" << AllErrors(load));
  REQUIRE(load.ok());
  const ApiConfig& api = load.config->api;
  CHECK(api.socket == "/etc/guardian/run/guardian.sock");  // relative to the config's folder
  CHECK(api.socket_mode == 0600);
  CHECK(api.tcp == "127.0.0.1:9731");
  CHECK_FALSE(api.allow_remote);
  CHECK(api.max_connections == 65'536);
  CHECK(api.request_timeout_ms == 100);
  CHECK(api.max_body_bytes == 1024);
}

TEST_CASE("api.socket_mode: octal without bits for others is accepted") {
  for (const char* mode : {"\"0600\"", "\"0660\"", "\"0640\"", "\"0700\"", "\"0770\"", "\"600\""}) {
    CAPTURE(mode);
    ConfigLoad load = Load(WithCheck("api:\n  socket_mode: " + std::string(mode) + "\n"));
    INFO("errors:\n" << AllErrors(load));
    REQUIRE(load.ok());
    CHECK((load.config->api.socket_mode & 07) == 0);
  }
  for (auto [text, mode] : {std::pair{"\"0600\"", 0600}, {"\"0640\"", 0640}, {"\"750\"", 0750}}) {
    CAPTURE(text);
    ConfigLoad load = Load(WithCheck("api: {socket_mode: " + std::string(text) + "}\n"));
    REQUIRE(load.ok());
    CHECK(load.config->api.socket_mode == mode);
  }
  // Unquoted, yaml-cpp keeps the text as written, so it is still read as octal, not 660 decimal.
  ConfigLoad plain = Load(WithCheck("api: {socket_mode: 0660}\n"));
  REQUIRE(plain.ok());
  CHECK(plain.config->api.socket_mode == 0660);
}

TEST_CASE("api.socket_mode that lets others connect is refused at the field") {
  ConfigLoad load = Load(WithCheck("api:\n  socket_mode: \"0666\"\n"));
  ExpectOneError(load, 2, 16, "api.socket_mode: must not let others connect (mode 0666");
  CHECK(load.errors[0].ToString().starts_with("g.yaml:2:16: api.socket_mode: "));
  ExpectOneError(Load(WithCheck("api: {socket_mode: \"0664\"}\n")), 1, 20,
                 "api.socket_mode: must not let others connect (mode 0664");
  ExpectOneError(Load(WithCheck("api: {socket_mode: \"0661\"}\n")), 1, 20, "must not let others");
  ExpectOneError(Load(WithCheck("api: {socket_mode: \"0777\"}\n")), 1, 20, "must not let others");
  ExpectOneError(Load(WithCheck("api: {socket_mode: \"0007\"}\n")), 1, 20, "must not let others");
}

TEST_CASE("api.socket_mode that is not an octal mode is refused") {
  for (const char* mode : {"\"0668\"", "\"rw-rw----\"", "\"\"", "\"0x1B0\"", "\"00660\"",
                           "\"-660\"", "\" 660\"", "\"0o660\"", "\"u=rw,g=rw\""}) {
    CAPTURE(mode);
    ExpectOneError(Load(WithCheck("api: {socket_mode: " + std::string(mode) + "}\n")), 1, 20,
                   "api.socket_mode: must be an octal file mode such as \"0660\"");
  }
  for (const char* mode : {"\"4770\"", "\"2770\"", "\"1770\""}) {
    CAPTURE(mode);
    ExpectOneError(Load(WithCheck("api: {socket_mode: " + std::string(mode) + "}\n")), 1, 20,
                   "api.socket_mode: must be permission bits only (at most 0777)");
  }
  ExpectOneError(Load(WithCheck("api: {socket_mode: [6, 6, 0]}\n")), 1, 20,
                 "api.socket_mode: expected a string, got a sequence");
}

TEST_CASE("api.socket too long for a Unix socket address") {
  std::string ok = "/" + std::string(106, 's');  // 107 bytes
  ConfigLoad load = Load(WithCheck("api: {socket: " + ok + "}\n"));
  INFO("errors:\n" << AllErrors(load));
  REQUIRE(load.ok());
  CHECK(load.config->api.socket == ok);
  ExpectOneError(Load(WithCheck("api: {socket: /" + std::string(107, 's') + "}\n")), 1, 15,
                 "api.socket: socket path is 108 bytes; a Unix socket path must be at most 107");
}

TEST_CASE("api.tcp on loopback is accepted") {
  for (const char* tcp : {"127.0.0.1:9731", "\"[::1]:9731\"", "localhost:9731", "127.8.9.10:1",
                          "127.0.0.1:65535", "\"[0:0:0:0:0:0:0:1]:80\""}) {
    CAPTURE(tcp);
    ConfigLoad load = Load(WithCheck("api:\n  tcp: " + std::string(tcp) + "\n"));
    INFO("errors:\n" << AllErrors(load));
    REQUIRE(load.ok());
    std::string expected = tcp;
    if (expected.front() == '"') expected = expected.substr(1, expected.size() - 2);
    CHECK(load.config->api.tcp == expected);
    CHECK_FALSE(load.config->api.allow_remote);
  }
}

TEST_CASE("api.tcp off loopback is refused unless allow_remote is true") {
  ConfigLoad load = Load(WithCheck("api:\n  tcp: 0.0.0.0:9731\n"));
  ExpectOneError(load, 2, 8, "api.tcp: '0.0.0.0' is not a loopback address");
  CHECK(Contains(load.errors[0].message, "api.allow_remote"));
  ExpectOneError(Load(WithCheck("api:\n  tcp: 10.1.2.3:80\n")), 2, 8,
                 "api.tcp: '10.1.2.3' is not a loopback address");
  ExpectOneError(Load(WithCheck("api:\n  tcp: \"[::]:9731\"\n")), 2, 8,
                 "api.tcp: '::' is not a loopback address");
  ExpectOneError(Load(WithCheck("api:\n  tcp: 128.0.0.1:80\n")), 2, 8, "not a loopback address");
  ExpectOneError(Load(WithCheck("api:\n  allow_remote: false\n  tcp: 10.1.2.3:80\n")), 3, 8,
                 "not a loopback address");

  for (const char* tcp :
       {"0.0.0.0:9731", "10.1.2.3:80", "\"[::]:9731\"", "\"[2001:db8::1]:443\""}) {
    CAPTURE(tcp);
    load = Load(WithCheck("api:\n  tcp: " + std::string(tcp) + "\n  allow_remote: true\n"));
    INFO("errors:\n" << AllErrors(load));
    REQUIRE(load.ok());
    CHECK(load.config->api.allow_remote);
    CHECK_FALSE(load.config->api.tcp.empty());
  }
  // allow_remote applies whichever of the two keys comes first.
  load = Load(WithCheck("api: {allow_remote: true, tcp: 10.1.2.3:80}\n"));
  REQUIRE(load.ok());
  CHECK(load.config->api.tcp == "10.1.2.3:80");
}

TEST_CASE("api.tcp with a bad port or host is refused, even with allow_remote") {
  struct Case {
    const char* tcp;
    const char* part;
  };
  for (const Case& c : {
           Case{"127.0.0.1:0", "port must be a number from 1 to 65535, got '0'"},
           Case{"127.0.0.1:65536", "port must be a number from 1 to 65535, got '65536'"},
           Case{"127.0.0.1:99999999999", "port must be a number from 1 to 65535"},
           Case{"127.0.0.1:http", "got 'http'"},
           Case{"\"127.0.0.1:\"", "got ''"},
           Case{"\"127.0.0.1:-1\"", "got '-1'"},
           Case{"\"127.0.0.1: 80\"", "got ' 80'"},
           Case{"127.0.0.1", "expected HOST:PORT"},
           Case{"\"::1:9731\"", "expected HOST:PORT (IPv6 as [ADDR]:PORT)"},
           Case{"\"[::1]9731\"", "expected [IPV6]:PORT"},
           Case{"\"[::1\"", "expected [IPV6]:PORT"},
           Case{"example.com:80", "host must be a numeric IP address or localhost"},
           Case{"\":9731\"", "host must be a numeric IP address"},
           Case{"\"127.1:80\"", "host must be a numeric IP address"},
       }) {
    CAPTURE(c.tcp);
    for (const char* remote : {"false", "true"}) {
      CAPTURE(remote);
      ConfigLoad load = Load(
          WithCheck("api:\n  tcp: " + std::string(c.tcp) + "\n  allow_remote: " + remote + "\n"));
      ExpectOneError(load, 2, 8, c.part);
      CHECK(load.errors[0].message.starts_with("api.tcp: "));
    }
  }
}

TEST_CASE("api: unknown key, wrong types and limits out of range") {
  ConfigLoad load = Load(WithCheck("api:\n  sockt: /run/g.sock\n"));
  ExpectOneError(load, 2, 3, "api: unknown key 'sockt' (did you mean 'socket'?)");
  ExpectOneError(Load(WithCheck("api:\n  port: 9731\n")), 2, 3, "api: unknown key 'port'");
  ExpectOneError(Load(WithCheck("api: /run/g.sock\n")), 1, 6,
                 "api: expected a mapping, got \"/run/g.sock\"");
  ExpectOneError(Load(WithCheck("api: {allow_remote: yes}\n")), 1, 21,
                 "api.allow_remote: expected true or false, got \"yes\"");
  ExpectOneError(Load(WithCheck("api: {tcp: 9731}\n")), 1, 12, "api.tcp: expected HOST:PORT");
  ExpectOneError(Load(WithCheck("api: {max_connections: 0}\n")), 1, 24,
                 "api.max_connections: must be between 1 and 65536, got 0");
  ExpectOneError(Load(WithCheck("api: {max_connections: 65537}\n")), 1, 24,
                 "must be between 1 and 65536, got 65537");
  ExpectOneError(Load(WithCheck("api: {request_timeout_ms: 99}\n")), 1, 27,
                 "api.request_timeout_ms: must be between 100 and 3600000, got 99");
  ExpectOneError(Load(WithCheck("api: {max_body_bytes: 1023}\n")), 1, 23,
                 "api.max_body_bytes: must be between 1024 and 67108864, got 1023");
  ExpectOneError(Load(WithCheck("api: {max_body_bytes: \"64k\"}\n")), 1, 23,
                 "api.max_body_bytes: expected an integer, got \"64k\"");
}

TEST_CASE("api: every bad key of the section is reported") {
  ConfigLoad load =
      Load(WithCheck("api:\n"
                     "  socket_mode: \"0666\"\n"
                     "  tcp: 0.0.0.0:80\n"
                     "  max_connections: 0\n"
                     "  colour: blue\n"
                     "mode: banana\n"));
  INFO("errors:\n" << AllErrors(load));
  CHECK(load.config == nullptr);
  std::vector<std::string> expected = {
      "g.yaml:2:16: api.socket_mode: must not let others connect",
      "g.yaml:3:8: api.tcp: '0.0.0.0' is not a loopback address",
      "g.yaml:4:20: api.max_connections: must be between 1 and 65536, got 0",
      "g.yaml:5:3: api: unknown key 'colour'",
      "g.yaml:6:7: mode: must be one of act, observe, got 'banana'",
  };
  REQUIRE(load.errors.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    CAPTURE(i);
    CHECK(load.errors[i].ToString().starts_with(expected[i]));
  }
}

TEST_CASE("SplitHostPort") {
  std::string host, why;
  int port = 0;
  REQUIRE(SplitHostPort("127.0.0.1:9731", &host, &port, &why));
  CHECK(host == "127.0.0.1");
  CHECK(port == 9731);
  REQUIRE(SplitHostPort("[::1]:80", &host, &port, &why));
  CHECK(host == "::1");
  CHECK(port == 80);
  REQUIRE(SplitHostPort("[fe80::1:2]:65535", &host, &port, &why));
  CHECK(host == "fe80::1:2");
  CHECK(port == 65535);
  REQUIRE(SplitHostPort("localhost:1", &host, &port, &why));
  CHECK(host == "localhost");
  CHECK(port == 1);
  REQUIRE(SplitHostPort("0.0.0.0:9731", &host, &port, &why));  // valid; loopback is judged apart
  CHECK(host == "0.0.0.0");

  struct Bad {
    const char* text;
    const char* part;
  };
  for (const Bad& b : {
           Bad{"", "expected HOST:PORT"},
           Bad{"127.0.0.1", "expected HOST:PORT"},
           Bad{"::1:80", "expected HOST:PORT (IPv6 as [ADDR]:PORT)"},
           Bad{"a:b:80", "expected HOST:PORT"},
           Bad{"[::1]", "expected [IPV6]:PORT, got '[::1]'"},
           Bad{"[::1]80", "expected [IPV6]:PORT"},
           Bad{"[::1:80", "expected [IPV6]:PORT"},
           Bad{"127.0.0.1:0", "port must be a number from 1 to 65535, got '0'"},
           Bad{"127.0.0.1:65536", "got '65536'"},
           Bad{"127.0.0.1:-80", "got '-80'"},
           Bad{"127.0.0.1:+80", "got '+80'"},
           Bad{"127.0.0.1:80x", "got '80x'"},
           Bad{"127.0.0.1:", "got ''"},
           Bad{"[::1]:", "got ''"},
           Bad{"host.example:80", "host must be a numeric IP address or localhost"},
           Bad{"LOCALHOST:80", "got 'LOCALHOST'"},
           Bad{":80", "got ''"},
           Bad{"[]:80", "got ''"},
           Bad{"256.0.0.1:80", "got '256.0.0.1'"},
           Bad{"[::1%lo]:80", "host must be a numeric IP address"},
       }) {
    CAPTURE(b.text);
    std::string h = "unchanged", w;
    int p = -7;
    CHECK_FALSE(SplitHostPort(b.text, &h, &p, &w));
    CHECK(Contains(w, b.part));
    CHECK(h == "unchanged");  // outputs are written only on success
    CHECK(p == -7);
  }
}

TEST_CASE("IsLoopbackHost") {
  for (const char* h : {"localhost", "127.0.0.1", "127.0.0.0", "127.255.255.255", "127.1.2.3",
                        "::1", "0:0:0:0:0:0:0:1", "0000::0001"}) {
    CAPTURE(h);
    CHECK(IsLoopbackHost(h));
  }
  for (const char* h : {"", "0.0.0.0", "::", "10.1.2.3", "128.0.0.1", "126.255.255.255",
                        "192.168.0.1", "::2", "fe80::1", "LOCALHOST", "localhost.", "127.1",
                        "127.0.0.1.example", "[::1]", "example.com", "::ffff:10.0.0.1"}) {
    CAPTURE(h);
    CHECK_FALSE(IsLoopbackHost(h));
  }
}

// ---- files ------------------------------------------------------------------------------------

// A fresh folder under the temp dir, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "guardian-config-test-XXXXXX").string();
    REQUIRE(mkdtemp(templ.data()) != nullptr);
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST_CASE("LoadConfigFile resolves against the file's folder") {
  TempDir dir;
  fs::path file = dir.path() / "guardian.yaml";
  {
    std::ofstream out(file);
    out << "state_dir: state\n" << kCheck;
  }
  ConfigLoad load = LoadConfigFile(file.string(), TestSchemas);
  INFO("errors:\n" << AllErrors(load));
  REQUIRE(load.ok());
  CHECK(load.config->path == file.string());
  CHECK(load.config->state_dir == (dir.path() / "state").string());
  CHECK(load.config->playbook_dirs ==
        std::vector<std::string>{(dir.path() / "playbooks").string()});
}

TEST_CASE("LoadConfigFile reports errors against the path as given") {
  TempDir dir;
  fs::path file = dir.path() / "bad.yaml";
  {
    std::ofstream out(file);
    out << "log_level: shout\n";
  }
  ConfigLoad load = LoadConfigFile(file.string(), TestSchemas);
  REQUIRE(load.errors.size() == 1);
  CHECK(load.errors[0].ToString().starts_with(file.string() + ":1:12: log_level: must be one of"));
}

TEST_CASE("LoadConfigFile on a missing file or a folder") {
  TempDir dir;
  std::string missing = (dir.path() / "nope.yaml").string();
  ConfigLoad load = LoadConfigFile(missing, TestSchemas);
  CHECK(load.config == nullptr);
  REQUIRE(load.errors.size() == 1);
  CHECK(load.errors[0].line == 0);
  CHECK(load.errors[0].ToString() == missing + ": cannot read: No such file or directory");

  load = LoadConfigFile(dir.path().string(), TestSchemas);
  REQUIRE(load.errors.size() == 1);
  CHECK(load.errors[0].ToString() == dir.path().string() + ": cannot read: is a directory");
}

}  // namespace
TEST_CASE("services: defaults, port range, restart pacing and env") {
  setenv("GUARDIAN_TEST_BIN", "/opt/demo", 1);
  ConfigLoad load = Load(
      "state_dir: /var/lib/g\n"
      "services:\n"
      "  - name: app\n"
      "    argv: [\"${GUARDIAN_TEST_BIN}/bin/app\", --config, \"${GUARDIAN_TEST_BIN}/app.yaml\"]\n"
      "    port: {preferred: 8080, range: [8080, 8089]}\n"
      "    restart: {backoff_base_ms: 100, healthy_after_ms: 2000}\n"
      "    env: {MODE: demo}\n"
      "    status_file: run/status.json\n"
      "  - name: worker\n"
      "    argv: [worker]\n"
      "    stop_on_exit: false\n"
      "checks:\n"
      "  - id: disk\n"
      "    mode: disk_full\n"
      "    params: {path: /srv, service: app}\n");
  INFO(AllErrors(load));
  REQUIRE(load.ok());
  const Config& c = *load.config;
  REQUIRE(c.services.size() == 2);
  const ServiceConfig& app = c.services[0];
  CHECK(app.argv ==
        std::vector<std::string>{"/opt/demo/bin/app", "--config", "/opt/demo/app.yaml"});
  CHECK(app.cwd == "/etc/guardian");
  CHECK(app.port_preferred == 8080);
  CHECK(app.port_lo == 8080);
  CHECK(app.port_hi == 8089);
  CHECK(app.backoff_base_ms == 100);
  CHECK(app.backoff_max_ms == 30'000);
  CHECK(app.healthy_after_ms == 2000);
  CHECK(app.env.at("MODE") == "demo");
  CHECK(app.status_file == "/etc/guardian/run/status.json");
  CHECK(app.output == "/var/lib/g/services/app.log");
  CHECK(app.stop_on_exit);
  const ServiceConfig& worker = c.services[1];
  CHECK(worker.argv == std::vector<std::string>{"worker"});  // looked up in PATH
  CHECK(worker.port_preferred == 0);
  CHECK_FALSE(worker.stop_on_exit);
  CHECK(c.port_registry == "/var/lib/g/ports.json");
  CHECK(c.FindService("app") == &c.services[0]);
  CHECK(c.FindService("nope") == nullptr);
}

TEST_CASE("services: a bad entry is reported at its field") {
  ExpectOneError(Load("services:\n  - name: app\n"), 2, 5, "missing required key 'argv'");
  ExpectOneError(Load("services:\n  - name: App!\n    argv: [x]\n"), 2, 11,
                 "not a valid service name");
  ExpectOneError(Load("services:\n  - name: app\n    argv: []\n"), 3, 11,
                 "argv must name a program");
  ExpectOneError(Load("services:\n  - name: app\n    argv: \"/bin/app --x\"\n"), 3, 11,
                 "expected a sequence of strings");
  ExpectOneError(Load("services:\n  - name: app\n    argv: [x]\n    port: {range: [1, 2]}\n"), 4,
                 11, "missing required key 'preferred'");
  ExpectOneError(
      Load("services:\n  - name: app\n    argv: [x]\n    port: {preferred: 80, range: [81, 90]}\n"),
      4, 34, "must be ordered and hold the preferred port 80");
  ExpectOneError(
      Load("services:\n  - name: app\n    argv: [x]\n    restart: {backoff_base_ms: 500, "
           "backoff_max_ms: 100}\n"),
      4, 53, "must be >= backoff_base_ms");
  ExpectOneError(Load("services:\n  - name: app\n    argv: [x]\n    comand: [y]\n"), 4, 5,
                 "unknown key 'comand'");
  ExpectOneError(Load("services:\n  - name: app\n    argv: [x]\n    memory_limit_mb: 64\n"), 4, 22,
                 "needs 'cgroup'");
}

TEST_CASE("services: duplicate names, and a check naming a service that does not exist") {
  ConfigLoad load = Load(
      "services:\n"
      "  - name: app\n"
      "    argv: [x]\n"
      "  - name: app\n"
      "    argv: [y]\n");
  ExpectOneError(load, 4, 5, "duplicate service name 'app' (first defined at line 2)");
  load = Load(
      "services:\n"
      "  - name: app\n"
      "    argv: [x]\n"
      "checks:\n"
      "  - id: disk\n"
      "    mode: disk_full\n"
      "    params: {path: /srv, service: apq}\n");
  ExpectOneError(load, 7, 35, "no service named 'apq' (did you mean 'app'?)");
  // A second service a check acts on (params.server) is checked the same way.
  load = Load(
      "services:\n"
      "  - name: model\n"
      "    argv: [x]\n"
      "checks:\n"
      "  - id: m\n"
      "    mode: disk_full\n"
      "    params: {path: /srv, server: modle}\n");
  ExpectOneError(load, 7, 34, "no service named 'modle' (did you mean 'model'?)");
}

}  // namespace guardian

namespace guardian {
namespace {

// ---- check templates --------------------------------------------------------------------------

TEST_CASE("a check template becomes one check per target, each with its own params") {
  ConfigLoad load = Load(
      "checks:\n"
      "  - mode: disk_full\n"
      "    interval_ms: 250\n"
      "    params: {min_free_percent: 10}\n"
      "    targets:\n"
      "      - {id: data, path: /srv/data}\n"
      "      - {id: logs, path: /srv/logs, min_free_percent: 20}\n");
  INFO(AllErrors(load));
  REQUIRE(load.ok());
  REQUIRE(load.config->checks.size() == 2);
  const CheckConfig& data = load.config->checks[0];
  const CheckConfig& logs = load.config->checks[1];
  CHECK(data.id == "data");
  CHECK(logs.id == "logs");
  CHECK(data.interval_ms == 250);
  CHECK(logs.interval_ms == 250);
  CHECK(ParamString(data.params, "path") == "/srv/data");
  CHECK(ParamNumber(data.params, "min_free_percent", 0) == 10);
  CHECK(ParamNumber(logs.params, "min_free_percent", 0) == 20);  // the target's own value wins
  CHECK(data.line == 6);  // each check is known by its target's line
  CHECK(logs.line == 7);
}

TEST_CASE("a template's errors name the target's line, and a template error is reported once") {
  ExpectOneError(Load("checks:\n"
                      "  - mode: disk_full\n"
                      "    targets:\n"
                      "      - {id: a, path: /a}\n"
                      "      - {id: b, path: /b, inodes: maybe}\n"),
                 5, 35, "targets[1].params.inodes");
  ExpectOneError(Load("checks:\n"
                      "  - mode: disk_full\n"
                      "    params: {nope: 1}\n"
                      "    targets:\n"
                      "      - {id: a, path: /a}\n"
                      "      - {id: b, path: /b}\n"),
                 3, 14, "unknown param 'nope'");
  ExpectOneError(Load("checks:\n"
                      "  - mode: disk_full\n"
                      "    targets:\n"
                      "      - {path: /a}\n"),
                 4, 9, "missing required key 'id'");
  ExpectOneError(Load("checks:\n"
                      "  - id: x\n"
                      "    mode: disk_full\n"
                      "    targets: [{id: a, path: /a}]\n"),
                 2, 5, "takes its ids from `targets`");
  ExpectOneError(Load("checks:\n"
                      "  - mode: disk_full\n"
                      "    targets: []\n"),
                 3, 14, "non-empty sequence of targets");
  // Ids from targets are checked for duplicates like any other.
  ExpectOneError(Load("checks:\n"
                      "  - mode: disk_full\n"
                      "    targets:\n"
                      "      - {id: a, path: /a}\n"
                      "      - {id: a, path: /b}\n"),
                 5, 14, "duplicate check id 'a'");
}

TEST_CASE("a template of 2000 targets loads in memory proportional to it") {
  // yaml-cpp copies the node set of a document into every node a node is assigned to; built
  // naively, each target copied the whole document: 0.5 GB for 1000 targets.
  std::string text = "checks:\n  - mode: disk_full\n    params: {path: /srv}\n    targets:\n";
  for (int i = 0; i < 2000; ++i) text += "      - {id: c" + std::to_string(i) + "}\n";
  struct rusage before {};
  ::getrusage(RUSAGE_SELF, &before);
  ConfigLoad load = Load(text);
  struct rusage after {};
  ::getrusage(RUSAGE_SELF, &after);
  REQUIRE(load.ok());
  CHECK(load.config->checks.size() == 2000);
  CHECK(after.ru_maxrss - before.ru_maxrss < 100 * 1024);  // KiB
}

// ---- least privilege: secrets, user and group ------------------------------------------------

std::string AllWarnings(const ConfigLoad& load) {
  std::string out;
  for (const auto& w : load.warnings) out += w.ToString() + "\n";
  return out;
}

bool HasSecret(const Config& c, const std::string& s) {
  return std::find(c.secrets.begin(), c.secrets.end(), s) != c.secrets.end();
}

void WriteFile(const fs::path& p, const std::string& text, fs::perms mode) {
  std::ofstream(p) << text;
  fs::permissions(p, mode);
}

TEST_CASE("secrets: read from a file or guardiand's environment, and collected for redaction") {
  TempDir dir;
  fs::path token = dir.path() / "token";
  WriteFile(token, "Bearer tok-from-file-1234\n", fs::perms::owner_read | fs::perms::owner_write);
  ScopedEnv env("GUARDIAN_TEST_SECRET", "env-secret-98765");
  ConfigLoad load = Load(
      "checks:\n"
      "  - id: disk\n"
      "    mode: disk_full\n"
      "    env:\n"
      "      API_TOKEN: {secret_env: GUARDIAN_TEST_SECRET}\n"
      "      GREETING: hello-world-value\n"
      "      DB_PASSWORD: literal-pass-1\n"
      "      TOKEN_FILE: /run/where-the-token-is\n"
      "    params:\n"
      "      path: /srv\n"
      "      url: https://user:url-password-5@example.com/x\n"
      "      api_token: param-token-77\n"
      "      headers:\n"
      "        Authorization: {secret_file: " +
      token.string() +
      "}\n"
      "        X-Trace: visible-value\n"
      "        X-Api-Key: literal-key-4321\n");
  INFO(AllErrors(load) << AllWarnings(load));
  REQUIRE(load.ok());
  CHECK(load.warnings.empty());
  const Config& c = *load.config;
  const CheckConfig& check = c.checks[0];
  CHECK(check.env.at("API_TOKEN") == "env-secret-98765");
  CHECK(check.env.at("GREETING") == "hello-world-value");
  StringMap headers = ParamMap(check.params, "headers");
  CHECK(headers.at("Authorization") == "Bearer tok-from-file-1234");  // the newline trimmed
  CHECK(headers.at("X-Trace") == "visible-value");
  for (const char* secret :
       {"Bearer tok-from-file-1234", "tok-from-file-1234", "env-secret-98765", "literal-pass-1",
        "literal-key-4321", "url-password-5", "param-token-77"}) {
    CHECK_MESSAGE(HasSecret(c, secret), secret);
  }
  for (const char* shown : {"hello-world-value", "visible-value", "/run/where-the-token-is"}) {
    CHECK_MESSAGE(!HasSecret(c, shown), shown);
  }
}

TEST_CASE("secrets: a reference that cannot be read is an error at its field") {
  TempDir dir;
  ScopedEnv unset("GUARDIAN_TEST_NO_SUCH_SECRET", nullptr);
  ScopedEnv empty("GUARDIAN_TEST_EMPTY_SECRET", "");
  auto env_entry = [](const std::string& value) {
    return Load(
        "checks:\n  - id: disk\n    mode: disk_full\n    params: {path: /srv}\n"
        "    env:\n      API_TOKEN: " +
        value + "\n");
  };
  ExpectOneError(env_entry("{secret_file: /nonexistent/guardian-secret}"), 6, 32,
                 "checks[0].env.API_TOKEN.secret_file: cannot read secret file "
                 "/nonexistent/guardian-secret: No such file or directory");
  ExpectOneError(env_entry("{secret_env: GUARDIAN_TEST_NO_SUCH_SECRET}"), 6, 31,
                 "checks[0].env.API_TOKEN.secret_env: environment variable "
                 "'GUARDIAN_TEST_NO_SUCH_SECRET' is not set");
  ExpectOneError(env_entry("{secret_env: GUARDIAN_TEST_EMPTY_SECRET}"), 6, 31, "is empty");
  ExpectOneError(env_entry("{secret_file: /a, secret_env: B}"), 6, 18, "one of them");
  ExpectOneError(env_entry("{secret_fil: /a}"), 6, 19, "unknown key 'secret_fil'");
  ExpectOneError(env_entry("{secret_file: " + dir.path().string() + "}"), 6, 32,
                 "is not a regular file");
  fs::path empty_file = dir.path() / "empty";
  WriteFile(empty_file, "\n", fs::perms::owner_read);
  ExpectOneError(env_entry("{secret_file: " + empty_file.string() + "}"), 6, 32, "is empty");
  // A header cannot carry a line break (it would end the header and start another).
  fs::path two_lines = dir.path() / "two-lines";
  WriteFile(two_lines, "line-one-abc\nline-two-abc\n", fs::perms::owner_read);
  ExpectOneError(Load("checks:\n  - id: disk\n    mode: disk_full\n"
                      "    params:\n      path: /srv\n      headers:\n"
                      "        Authorization: {secret_file: " +
                      two_lines.string() + "}\n"),
                 7, 24, "holds a line break");
  ExpectOneError(Load("checks:\n  - id: disk\n    mode: disk_full\n"
                      "    params: {path: /srv, headers: {\"Bad Name\": x}}\n"),
                 4, 36, "'Bad Name' is not a valid HTTP header name");
  ExpectOneError(Load("checks:\n  - id: disk\n    mode: disk_full\n    params: {path: /srv}\n"
                      "    env: {1BAD: x}\n"),
                 5, 11, "'1BAD' is not a valid environment variable name");
}

TEST_CASE("secrets: a file others may read and a secret too short to redact are warnings") {
  TempDir dir;
  fs::path open_file = dir.path() / "readable";
  WriteFile(open_file, "readable-secret-1\n",
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                fs::perms::others_read);
  ConfigLoad load = Load(
      "checks:\n  - id: disk\n    mode: disk_full\n    params: {path: /srv}\n"
      "    env:\n      API_TOKEN: {secret_file: " +
      open_file.string() + "}\n      DB_PASSWORD: abc\n");
  INFO(AllErrors(load) << AllWarnings(load));
  REQUIRE(load.ok());
  REQUIRE(load.warnings.size() == 2);
  CHECK(load.warnings[0].ToString() ==
        "g.yaml:6:32: warning: checks[0].env.API_TOKEN.secret_file: secret file " +
            open_file.string() + " may be read by its group or others (mode 0644): chmod 0600 it");
  CHECK(load.warnings[1].ToString() ==
        "g.yaml:7:20: warning: checks[0].env.DB_PASSWORD: a secret of 3 bytes is too short to be "
        "redacted from logs, the API and the store (6 bytes and more are)");
  CHECK(load.config->checks[0].env.at("API_TOKEN") == "readable-secret-1");
}

TEST_CASE("user and group: resolved at load; an unknown name is an error at its field") {
  ConfigLoad load = Load(
      "services:\n"
      "  - name: app\n"
      "    argv: [x]\n"
      "    user: nobody\n"
      "checks:\n"
      "  - id: disk\n"
      "    mode: disk_full\n"
      "    params: {path: /srv}\n"
      "    user: nobody\n"
      "    group: nogroup\n"
      "  - id: disk2\n"
      "    mode: disk_full\n"
      "    params: {path: /srv}\n"
      "    group: nogroup\n");
  INFO(AllErrors(load));
  REQUIRE(load.ok());
  const Config& c = *load.config;
  CHECK(c.services[0].run_as.uid == 65534);
  CHECK(c.services[0].run_as.gid == 65534);  // nobody's primary group
  CHECK(c.checks[0].run_as.uid == 65534);
  CHECK(c.checks[0].run_as.gid == 65534);
  CHECK(c.checks[0].run_as.ToString() == "user nobody, group nogroup");
  CHECK(c.checks[1].run_as.uid == -1);  // a group alone leaves the user as it is
  CHECK(c.checks[1].run_as.gid == 65534);
  CHECK_FALSE(Load(kCheck).config->checks[0].run_as.changes());

  ExpectOneError(Load("checks:\n  - id: disk\n    mode: disk_full\n    params: {path: /srv}\n"
                      "    user: no-such-user-x\n"),
                 5, 11, "checks[0].user: no user named 'no-such-user-x' on this host");
  ExpectOneError(Load("checks:\n  - id: disk\n    mode: disk_full\n    params: {path: /srv}\n"
                      "    user: nobody\n    group: no-such-group-x\n"),
                 6, 12, "checks[0].group: no group named 'no-such-group-x' on this host");
  ExpectOneError(Load("services:\n  - name: app\n    argv: [x]\n    user: no-such-user-x\n"), 4, 11,
                 "services[0].user: no user named 'no-such-user-x'");
  ExpectOneError(Load("api: {socket_group: no-such-group-x}\n"), 1, 21,
                 "api.socket_group: no group named 'no-such-group-x'");
  load = Load("api: {socket_group: nogroup}\n");
  REQUIRE(load.ok());
  CHECK(load.config->api.socket_gid == 65534);
}

TEST_CASE("programs: names resolved in PATH at load, and the check's own commands checked") {
  ConfigLoad load = Load(
      "playbook_limits: {programs: [printf, /usr/bin/true]}\n"
      "checks:\n"
      "  - id: a\n"
      "    mode: disk_full\n"
      "    params: {path: /srv, on_fail: [printf, x]}\n"
      "  - id: b\n"
      "    mode: disk_full\n"
      "    params: {path: /srv, on_fail: [/bin/sh, -c, x]}\n"
      "    programs: [/bin/sh]\n"
      "  - id: c\n"
      "    mode: disk_full\n"
      "    params: {path: /srv}\n"
      "    programs: []\n");
  INFO(AllErrors(load));
  REQUIRE(load.ok());
  const Config& c = *load.config;
  using List = std::vector<std::string>;
  // A name is kept as the file PATH found; a check's own list replaces the global one.
  CHECK(c.playbook_limits.programs == List{"/usr/bin/printf", "/usr/bin/true"});
  CHECK(c.checks[0].programs == c.playbook_limits.programs);
  CHECK(c.checks[1].programs == List{"/bin/sh"});
  CHECK(c.checks[2].programs == List{});
  CHECK_FALSE(Load(kCheck).config->checks[0].programs.has_value());  // no list: the default

  // Without a list, a shell in the check's own command is refused at its line.
  ExpectOneError(Load("checks:\n  - id: a\n    mode: disk_full\n"
                      "    params: {path: /srv, on_fail: [/bin/sh, -c, x]}\n"),
                 4, 35, "checks[0].params.on_fail: '/bin/sh' (");
  ExpectOneError(Load("checks:\n  - id: a\n    mode: disk_full\n"
                      "    params: {path: /srv, on_fail: [env, sh]}\n"),
                 4, 35, "is a shell or runs the command in its arguments");
  // With a list, a program not on it is refused; a program not installed is left to fail
  // when run, as any program that is missing.
  ExpectOneError(Load("checks:\n  - id: a\n    mode: disk_full\n"
                      "    params: {path: /srv, on_fail: [/usr/bin/true]}\n"
                      "    programs: [/usr/bin/printf]\n"),
                 4, 35, "'/usr/bin/true' is not in the check's programs (/usr/bin/printf)");
  CHECK(Load("checks:\n  - id: a\n    mode: disk_full\n"
             "    params: {path: /srv, on_fail: [/no/such/remedy]}\n"
             "    programs: [/usr/bin/printf]\n")
            .ok());
  // Entries: a relative path, a name not in PATH, a path with nothing there (a warning).
  ExpectOneError(Load("playbook_limits: {programs: [bin/x]}\n"), 1, 30,
                 "playbook_limits.programs[0]: program 'bin/x' must be an absolute path");
  ExpectOneError(Load("playbook_limits: {programs: [no-such-program-x]}\n"), 1, 30,
                 "no program named 'no-such-program-x' in PATH");
  load = Load("playbook_limits: {programs: [/opt/later/remedy]}\n");
  REQUIRE(load.ok());
  REQUIRE(load.warnings.size() == 1);
  CHECK(Contains(load.warnings[0].message, "no program at '/opt/later/remedy' yet"));
}

TEST_CASE("fleet: endpoints, host, budgets per mode, and its defaults") {
  ConfigLoad load = Load(
      "fleet:\n"
      "  name: shop\n"
      "  host: web-1.eu\n"
      "  endpoints: [http://10.0.0.1:2379/, https://10.0.0.2:2379]\n"
      "  tls: {ca_file: ca.pem, cert_file: /etc/g/c.pem, key_file: /etc/g/k.pem}\n"
      "  lease_ttl_s: 6\n"
      "  reconnect: {base_ms: 500}\n"
      "  budgets:\n"
      "    default: {max_concurrent: 2}\n"
      "    db_corruption: {max_concurrent: 1, min_healthy: 2}\n");
  INFO(AllErrors(load));
  REQUIRE(load.ok());
  const FleetConfig& f = load.config->fleet;
  CHECK(f.enabled);
  CHECK(f.name == "shop");
  CHECK(f.host == "web-1.eu");
  CHECK(f.endpoints == std::vector<std::string>{"http://10.0.0.1:2379", "https://10.0.0.2:2379"});
  CHECK(f.ca_file == "/etc/guardian/ca.pem");  // relative to the config's folder
  CHECK(f.key_file == "/etc/g/k.pem");
  CHECK(f.lease_ttl_s == 6);
  CHECK(f.reconnect_base_ms == 500);
  CHECK(f.reconnect_max_ms == 60000);  // the seed's cap
  CHECK(f.BudgetFor("db_corruption").min_healthy == 2);
  CHECK(f.BudgetFor("db_corruption").max_concurrent == 1);
  CHECK(f.BudgetFor("disk_full").max_concurrent == 2);  // the default entry
  CHECK(f.BudgetFor("disk_full").min_healthy == 0);

  load = Load("fleet: {name: shop, endpoints: [http://127.0.0.1:2379]}\n");
  REQUIRE(load.ok());
  CHECK_FALSE(load.config->fleet.host.empty());  // the host's own name
  CHECK(load.config->fleet.BudgetFor("x").max_concurrent == 1);
  CHECK_FALSE(Load(kCheck).config->fleet.enabled);
}

TEST_CASE("fleet: each mistake is an error at its field") {
  ExpectOneError(Load("fleet: {endpoints: [http://a:1]}\n"), 1, 8, "missing required key 'name'");
  ExpectOneError(Load("fleet: {name: Shop!, endpoints: [http://a:1]}\n"), 1, 15,
                 "fleet.name: must be a name of a-z");
  ExpectOneError(Load("fleet: {name: s}\n"), 1, 8, "missing required key 'endpoints'");
  ExpectOneError(Load("fleet: {name: s, endpoints: [a:2379]}\n"), 1, 30,
                 "fleet.endpoints[0]: must be an etcd client URL");
  ExpectOneError(Load("fleet: {name: s, endpoints: []}\n"), 1, 29, "needs at least one");
  ExpectOneError(Load("fleet: {name: s, host: 'a b', endpoints: [http://a:1]}\n"), 1, 24,
                 "fleet.host: must be a host id");
  ExpectOneError(Load("fleet: {name: s, endpoints: [http://a:1], tls: {cert_file: /c}}\n"), 1, 48,
                 "cert_file and key_file go together");
  ExpectOneError(
      Load("fleet: {name: s, endpoints: [http://a:1], lease_ttl_s: 6, request_timeout_ms: 2500}\n"),
      1, 79, "must be under a third of lease_ttl_s (2000 ms)");
  ExpectOneError(Load("fleet:\n  name: s\n  endpoints: [http://a:1]\n  budgets:\n"
                      "    db_corruptoin: {max_concurrent: 1}\n"),
                 5, 5, "unknown mode 'db_corruptoin' in fleet.budgets");
  ExpectOneError(Load("fleet:\n  name: s\n  endpoints: [http://a:1]\n  budgets:\n"
                      "    disk_full: {max_concurrent: 0}\n"),
                 5, 33, "fleet.budgets.disk_full.max_concurrent");
  // Without request_timeout_ms, a short lease gets a timeout that fits in a third of it.
  ConfigLoad load = Load("fleet: {name: s, endpoints: [http://a:1], lease_ttl_s: 3}\n");
  REQUIRE(load.ok());
  CHECK(load.config->fleet.request_timeout_ms < 1000);
}

}  // namespace
}  // namespace guardian
