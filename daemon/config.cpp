#include "daemon/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>
#include <utility>

#include "daemon/modes.h"
#include "daemon/program_policy.h"
#include "daemon/redact.h"

namespace guardian {

namespace fs = std::filesystem;

std::string ConfigError::ToString() const {
  if (line <= 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + message;
}

bool SplitHostPort(const std::string& text, std::string* host, int* port, std::string* why) {
  std::string h, p;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      *why = "expected [IPV6]:PORT, got '" + text + "'";
      return false;
    }
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) {
      *why = "expected HOST:PORT (IPv6 as [ADDR]:PORT), got '" + text + "'";
      return false;
    }
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
  }
  int v = 0;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
  if (ec != std::errc() || end != p.data() + p.size() || v < 1 || v > 65535) {
    *why = "port must be a number from 1 to 65535, got '" + p + "'";
    return false;
  }
  unsigned char buf[sizeof(in6_addr)];
  if (h != "localhost" && inet_pton(AF_INET, h.c_str(), buf) != 1 &&
      inet_pton(AF_INET6, h.c_str(), buf) != 1) {
    *why = "host must be a numeric IP address or localhost (no name lookups), got '" + h + "'";
    return false;
  }
  *host = h;
  *port = v;
  return true;
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

const CheckConfig* Config::FindCheck(std::string_view id) const {
  for (const auto& c : checks) {
    if (c.id == id) return &c;
  }
  return nullptr;
}

const ServiceConfig* Config::FindService(std::string_view name) const {
  for (const auto& s : services) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

namespace {

constexpr std::string_view kTopKeys[] = {
    "state_dir", "playbook_dirs", "log_level",       "mode",  "api",
    "defaults",  "budget",        "playbook_limits", "retry", "checks",
    "services",  "port_registry", "breaker",         "fleet"};
constexpr std::string_view kFleetKeys[] = {"name",      "host",        "endpoints",
                                           "tls",       "lease_ttl_s", "request_timeout_ms",
                                           "reconnect", "budgets"};
constexpr std::string_view kFleetTlsKeys[] = {"ca_file", "cert_file", "key_file"};
constexpr std::string_view kFleetReconnectKeys[] = {"base_ms", "max_ms"};
constexpr std::string_view kFleetBudgetKeys[] = {"max_concurrent", "min_healthy"};
constexpr std::string_view kApiKeys[] = {
    "socket",       "socket_mode",     "socket_group",       "tcp",
    "allow_remote", "max_connections", "request_timeout_ms", "max_body_bytes"};
constexpr std::string_view kRunModes[] = {"act", "observe"};
constexpr std::string_view kDefaultsKeys[] = {"interval_ms", "debounce", "jitter"};
constexpr std::string_view kBudgetKeys[] = {"max_actions", "window_ms"};
constexpr std::string_view kRetryKeys[] = {"backoff_base_ms", "backoff_max_ms"};
constexpr std::string_view kLimitsKeys[] = {"instructions", "memory_mb", "phase_timeout_ms",
                                            "programs"};
constexpr std::string_view kCheckKeys[] = {
    "id",     "mode",   "interval_ms", "debounce", "jitter", "target_ms", "playbook", "retries",
    "budget", "params", "depends_on",  "targets",  "user",   "group",     "env",      "programs"};
constexpr std::string_view kServiceKeys[] = {
    "name", "argv",    "cwd",           "env",          "status_file", "flags_file",      "output",
    "port", "restart", "stop_grace_ms", "stop_on_exit", "cgroup",      "memory_limit_mb", "user",
    "group"};
constexpr std::string_view kSecretRefKeys[] = {"secret_file", "secret_env"};
// A secret file is a credential, not a document: anything larger is a mistake.
constexpr int64_t kMaxSecretBytes = 64 * 1024;
constexpr std::string_view kServicePortKeys[] = {"preferred", "range"};
constexpr std::string_view kServiceRestartKeys[] = {"backoff_base_ms", "backoff_max_ms",
                                                    "healthy_after_ms"};
constexpr std::string_view kLogLevels[] = {"trace", "debug", "info", "warn", "error"};

constexpr int64_t kIntMax = INT_MAX;  // fields stored in an `int`
constexpr int64_t kInt64Max = INT64_MAX;

// Values shared by every check unless it sets its own.
struct CheckDefaults {
  int64_t interval_ms = 1'000;
  int debounce = 1;
  double jitter = 0.1;
};

// A value to validate: the node, the place to blame for it, and its key path for messages.
// Empty values (`key:` with nothing after it) get the key's mark, because yaml-cpp marks an empty
// null at the next token, which may be lines further down.
struct Item {
  YAML::Node node;
  YAML::Mark mark;
  std::string path;
};

struct Entry {
  YAML::Node key;
  Item value;
};

// Known keys of one mapping, by name. Lookups by string_view need the transparent comparator.
using Entries = std::map<std::string, Entry, std::less<>>;

bool ValidMark(const YAML::Mark& m) { return m.line >= 0 && m.column >= 0; }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// " (did you mean 'x'?)" for a near miss, so typos are fixed from the message alone.
template <typename Range>
std::string Suggest(std::string_view got, const Range& candidates) {
  std::string lower = Lower(got);
  std::string_view best;
  size_t best_distance = SIZE_MAX;
  for (const auto& c : candidates) {
    std::string_view cand(c);
    size_t d = EditDistance(lower, cand);
    if (d < best_distance) {
      best_distance = d;
      best = cand;
    }
  }
  if (best.empty() || best_distance > 2 || best_distance * 2 >= best.size()) return "";
  return " (did you mean '" + std::string(best) + "'?)";
}

template <typename Range>
std::string JoinNames(const Range& names) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += ", ";
    out += std::string_view(n);
  }
  return out;
}

// yaml-cpp tags a quoted or block scalar "!"; a plain one "?". Quoted text is a string even when
// it looks like a number, which is what makes `interval_ms: "5"` a type error.
bool IsPlain(const YAML::Node& n) { return n.Tag() != "!"; }

bool LooksInt(std::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Decimal notation only: YAML's .inf/.nan and from_chars's "inf"/"nan" are not config values.
bool LooksNumber(std::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  size_t i = 0;
  size_t digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == exp_start) return false;
  }
  return i == s.size();
}

// How a wrong value is shown in "expected X, got Y".
std::string Describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "null";
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Scalar:
      break;
  }
  std::string s = n.Scalar();
  if (s.size() > 40) s = s.substr(0, 40) + "...";  // keep one error on one line
  if (IsPlain(n) && (LooksNumber(s) || s == "true" || s == "false")) return s;
  return "\"" + s + "\"";
}

class Loader {
 public:
  Loader(std::string file_name, const ParamSchemaLookup& schemas)
      : file_(std::move(file_name)), schemas_(schemas) {}

  // `config_path` is what Config::path records; empty means file_name resolved against base_dir.
  ConfigLoad Load(std::string_view text, const std::string& base_dir,
                  const std::string& config_path) {
    auto config = std::make_shared<Config>();
    ResolveBase(base_dir);
    try {
      if (ScanDocuments(text)) {
        YAML::Node root = YAML::Load(std::string(text));  // the first document only
        if (root.IsNull()) {
          ErrorAt(1, 1,
                  "config is empty: expected a mapping of keys (" + JoinNames(kTopKeys) + ")");
        } else {
          ReadTop(root, *config);
        }
      }
    } catch (const YAML::ParserException& e) {
      Error(e.mark, "YAML syntax error: " + e.msg);
    } catch (const YAML::Exception& e) {
      // Not expected past the parser (we never convert with as<>), but never let one escape.
      Error(e.mark, "YAML error: " + e.msg);
    }
    // Sections are validated in dependency order, not file order; report in file order.
    std::stable_sort(errors_.begin(), errors_.end(),
                     [](const ConfigError& a, const ConfigError& b) {
                       return std::tie(a.line, a.col) < std::tie(b.line, b.col);
                     });
    auto by_place = [](const ConfigError& a, const ConfigError& b) {
      return std::tie(a.line, a.col, a.message) < std::tie(b.line, b.col, b.message);
    };
    // A check template reads its keys once per target: one warning each, not one per target.
    std::sort(warnings_.begin(), warnings_.end(), by_place);
    warnings_.erase(std::unique(warnings_.begin(), warnings_.end(),
                                [](const ConfigError& a, const ConfigError& b) {
                                  return a.line == b.line && a.col == b.col &&
                                         a.message == b.message;
                                }),
                    warnings_.end());
    ConfigLoad out;
    out.errors = std::move(errors_);
    out.warnings = std::move(warnings_);
    if (out.errors.empty()) {
      config->path =
          !config_path.empty() ? config_path : (base_ / file_).lexically_normal().string();
      config->secrets = std::move(secrets_);
      out.config = std::move(config);
    }
    return out;
  }

 private:
  // ---- documents ------------------------------------------------------------------------------

  // Records where each document's root starts and whether it is empty; nothing else.
  class RootScan : public YAML::EventHandler {
   public:
    struct Root {
      YAML::Mark mark;
      bool null = false;
    };
    Root root;

    void OnDocumentStart(const YAML::Mark&) override {
      depth_ = 0;
      root = Root();
    }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark& m, YAML::anchor_t) override { Node(m, true); }
    void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { Node(m, false); }
    void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  const std::string&) override {
      Node(m, false);
    }
    void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {
      Node(m, false);
      ++depth_;
    }
    void OnSequenceEnd() override { --depth_; }
    void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {
      Node(m, false);
      ++depth_;
    }
    void OnMapEnd() override { --depth_; }

   private:
    void Node(const YAML::Mark& m, bool null) {
      if (depth_ == 0) root = Root{m, null};
    }
    int depth_ = 0;
  };

  // Checks the text holds at most one document, reading no further than the second. Returns
  // false when the text cannot be loaded. yaml-cpp 0.7's LoadAll loops forever, allocating, on a
  // token no rule consumes, such as a stray ',' at the top level (yaml-cpp#1040, fixed upstream
  // after 0.8.0): each "document" is an empty root at the same place. Here that shows as two empty
  // roots at one mark, and is reported as the syntax error it is.
  bool ScanDocuments(std::string_view text) {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    RootScan scan;
    if (!parser.HandleNextDocument(scan)) return true;  // no document at all: empty
    RootScan::Root first = scan.root;
    if (!parser.HandleNextDocument(scan)) return true;
    RootScan::Root second = scan.root;
    if (first.null && second.null && first.mark.pos == second.mark.pos) {
      std::string what = "unexpected input";
      if (first.mark.pos >= 0 && static_cast<size_t>(first.mark.pos) < text.size()) {
        what = "unexpected '" + std::string(1, text[first.mark.pos]) + "'";
      }
      Error(first.mark, "YAML syntax error: " + what);
      return false;
    }
    Error(second.mark, "expected one YAML document, found another ('---' starts a new one)");
    return true;
  }

  // ---- errors ---------------------------------------------------------------------------------

  void ErrorAt(int line, int col, std::string message) {
    // Values quoted from the file may span lines; one error stays one line of output.
    for (size_t at = message.find('\n'); at != std::string::npos; at = message.find('\n', at)) {
      message.replace(at, 1, "\\n");
    }
    errors_.push_back(ConfigError{file_, line, col, std::move(message)});
  }
  void Error(const YAML::Mark& m, std::string message) {
    if (ValidMark(m)) {
      ErrorAt(m.line + 1, m.column + 1, std::move(message));
    } else {
      ErrorAt(1, 1, std::move(message));
    }
  }
  void Error(const Item& item, const std::string& message) {
    Error(item.mark, item.path + ": " + message);
  }
  void Warn(const Item& item, const std::string& message) {
    const YAML::Mark& m = item.mark;
    warnings_.push_back(ConfigError{file_, ValidMark(m) ? m.line + 1 : 1,
                                    ValidMark(m) ? m.column + 1 : 1,
                                    "warning: " + item.path + ": " + message});
  }

  // ---- structure ------------------------------------------------------------------------------

  static Item ValueItem(const YAML::Node& key, const YAML::Node& value, std::string path) {
    YAML::Mark m = value.Mark();
    if (!ValidMark(m) || (value.IsNull() && m.line != key.Mark().line)) m = key.Mark();
    return Item{value, m, std::move(path)};
  }

  static std::string Child(const std::string& parent, std::string_view key) {
    return parent.empty() ? std::string(key) : parent + "." + std::string(key);
  }

  // Reads a mapping's keys: each must be a scalar, appear once and be one of `known`. Returns
  // the known ones; unknown and duplicate keys are reported and skipped.
  template <typename Range>
  std::optional<Entries> ReadMapping(const Item& item, const Range& known,
                                     std::string_view noun = "key",
                                     const std::string& noun_suffix = "") {
    if (!item.node.IsMap()) {
      Error(item, "expected a mapping, got " + Describe(item.node));
      return std::nullopt;
    }
    Entries entries;
    std::map<std::string, int> first_line;
    std::string where = item.path.empty() ? "" : item.path + ": ";
    for (const auto& pair : item.node) {
      // Copies: yaml-cpp's iterator yields a temporary pair, so references into it would dangle.
      YAML::Node key = pair.first;
      YAML::Node value = pair.second;
      if (!key.IsScalar()) {
        Error(key.Mark(), where + "keys must be plain names, got " + Describe(key));
        continue;
      }
      const std::string& name = key.Scalar();
      auto [seen, inserted] = first_line.emplace(name, key.Mark().line + 1);
      if (!inserted) {
        Error(key.Mark(), where + "duplicate " + std::string(noun) + " '" + name +
                              "' (first at line " + std::to_string(seen->second) + ")");
        continue;
      }
      bool is_known = std::any_of(std::begin(known), std::end(known),
                                  [&](const auto& k) { return std::string_view(k) == name; });
      if (!is_known) {
        Error(key.Mark(), where + "unknown " + std::string(noun) + " '" + name + "'" + noun_suffix +
                              Suggest(name, known));
        continue;
      }
      entries.emplace(name, Entry{key, ValueItem(key, value, Child(item.path, name))});
    }
    return entries;
  }

  static const Entry* Find(const Entries& entries, std::string_view name) {
    auto it = entries.find(name);
    return it == entries.end() ? nullptr : &it->second;
  }

  // A container key written with nothing after it (`checks:`) counts as absent, so commenting
  // out every entry of a section does not turn into a type error.
  static const Entry* FindContainer(const Entries& entries, std::string_view name) {
    const Entry* e = Find(entries, name);
    return (e && e->value.node.IsNull()) ? nullptr : e;
  }

  // ---- scalars --------------------------------------------------------------------------------

  std::optional<int64_t> Int(const Item& item, int64_t lo, int64_t hi) {
    const YAML::Node& n = item.node;
    if (!n.IsScalar() || !IsPlain(n) || !LooksInt(n.Scalar())) {
      Error(item, "expected an integer, got " + Describe(n));
      return std::nullopt;
    }
    std::string_view s = n.Scalar();
    if (s[0] == '+') s.remove_prefix(1);
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || ptr != s.data() + s.size()) {
      Error(item, "integer " + n.Scalar() + " is out of range");
      return std::nullopt;
    }
    if (v < lo || v > hi) {
      // Fields without a real upper bound only cap at the storage type; name the bound crossed.
      std::string range =
          hi < kIntMax ? "must be between " + std::to_string(lo) + " and " + std::to_string(hi)
          : v < lo     ? "must be >= " + std::to_string(lo)
                       : "must be <= " + std::to_string(hi);
      Error(item, range + ", got " + std::to_string(v));
      return std::nullopt;
    }
    return v;
  }

  std::optional<double> Number(const Item& item) {
    const YAML::Node& n = item.node;
    if (!n.IsScalar() || !IsPlain(n) || !LooksNumber(n.Scalar())) {
      Error(item, "expected a number, got " + Describe(n));
      return std::nullopt;
    }
    std::string_view s = n.Scalar();
    if (s[0] == '+') s.remove_prefix(1);
    double v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || ptr != s.data() + s.size()) {
      Error(item, "number " + n.Scalar() + " is out of range");
      return std::nullopt;
    }
    return v;
  }

  std::optional<bool> Bool(const Item& item) {
    const YAML::Node& n = item.node;
    if (n.IsScalar() && IsPlain(n) && (n.Scalar() == "true" || n.Scalar() == "false")) {
      return n.Scalar() == "true";
    }
    Error(item, "expected true or false, got " + Describe(n));
    return std::nullopt;
  }

  std::optional<std::string> String(const Item& item) {
    if (!item.node.IsScalar()) {
      Error(item, "expected a string, got " + Describe(item.node));
      return std::nullopt;
    }
    return item.node.Scalar();
  }

  // ${VAR} and ${VAR:-default}, as in the shell: the default applies when VAR is unset or empty.
  // A `$` not followed by `{` is literal. Every undefined variable in the value is reported.
  std::optional<std::string> Expand(const Item& item, const std::string& in) {
    std::string out;
    bool ok = true;
    size_t i = 0;
    while (i < in.size()) {
      if (in[i] != '$' || i + 1 >= in.size() || in[i + 1] != '{') {
        out += in[i++];
        continue;
      }
      size_t close = in.find('}', i + 2);
      if (close == std::string::npos) {
        Error(item, "unterminated '${' in \"" + in + "\"");
        return std::nullopt;
      }
      std::string body = in.substr(i + 2, close - i - 2);
      size_t sep = body.find(":-");
      std::string name = body.substr(0, sep);
      bool valid_name = !name.empty() && !std::isdigit(static_cast<unsigned char>(name[0])) &&
                        std::all_of(name.begin(), name.end(), [](char c) {
                          return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
                        });
      if (!valid_name) {
        Error(item, "invalid environment variable name '" + name + "' in \"" + in + "\"");
        ok = false;
      } else {
        const char* value = std::getenv(name.c_str());
        if (value && (*value != '\0' || sep == std::string::npos)) {
          out += value;
        } else if (sep != std::string::npos) {
          out += body.substr(sep + 2);
        } else {
          Error(item, "environment variable '" + name + "' is not set (write ${" + name +
                          ":-default} to give a fallback)");
          ok = false;
        }
      }
      i = close + 1;
    }
    if (!ok) return std::nullopt;
    return out;
  }

  // Lexically normalized and absolute; the path need not exist yet (state_dir is created later).
  std::optional<std::string> Path(const Item& item) {
    if (!item.node.IsScalar()) {
      Error(item, "expected a path, got " + Describe(item.node));
      return std::nullopt;
    }
    std::optional<std::string> expanded = Expand(item, item.node.Scalar());
    if (!expanded) return std::nullopt;
    if (expanded->empty()) {
      Error(item, "path is empty");
      return std::nullopt;
    }
    if (expanded->find('\0') != std::string::npos) {
      Error(item, "path contains a NUL byte");
      return std::nullopt;
    }
    fs::path p(*expanded);
    if (p.is_relative()) p = base_ / p;
    std::string s = p.lexically_normal().string();
    if (s.size() > 1 && s.back() == '/') s.pop_back();
    return s;
  }

  // A sequence of strings; with `paths`, each is expanded and resolved like a path.
  std::optional<std::vector<std::string>> StringList(const Item& item, bool paths = false) {
    if (!item.node.IsSequence()) {
      Error(item, std::string("expected a sequence of ") + (paths ? "paths" : "strings") +
                      ", got " + Describe(item.node));
      return std::nullopt;
    }
    std::vector<std::string> out;
    bool ok = true;
    for (size_t i = 0; i < item.node.size(); ++i) {
      Item elem = SequenceItem(item, i);
      if (auto s = paths ? Path(elem) : String(elem)) {
        out.push_back(std::move(*s));
      } else {
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return out;
  }

  // ---- secrets and the processes spawned for a check or service ------------------------------

  // Records a value for redaction (daemon/redact.h).
  void AddSecret(const Item& item, const std::string& value) {
    for (auto& part : SecretParts(value)) secrets_.push_back(std::move(part));
    if (value.size() < kMinRedactedLength) {
      Warn(item, "a secret of " + std::to_string(value.size()) +
                     " bytes is too short to be redacted from logs, the API and the store (" +
                     std::to_string(kMinRedactedLength) + " bytes and more are)");
    }
  }

  std::optional<std::string> ReadSecretFile(const Item& item, const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      Error(item, "cannot read secret file " + path + ": " + std::strerror(errno));
      return std::nullopt;
    }
    struct stat st {};
    std::string text;
    std::string problem;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      problem = "secret file " + path + " is not a regular file";
    } else if (st.st_size > kMaxSecretBytes) {
      problem = "secret file " + path + " is " + std::to_string(st.st_size) +
                " bytes; a secret file holds at most " + std::to_string(kMaxSecretBytes);
    } else {
      char buf[4096];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof(buf))) > 0 &&
             text.size() <= static_cast<size_t>(kMaxSecretBytes))
        text.append(buf, static_cast<size_t>(n));
      if (n < 0) problem = "cannot read secret file " + path + ": " + std::strerror(errno);
    }
    ::close(fd);
    if (!problem.empty()) {
      Error(item, problem);
      return std::nullopt;
    }
    // One trailing newline is how editors and `echo` end a file, not part of the secret.
    if (!text.empty() && text.back() == '\n') text.pop_back();
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.empty()) {
      Error(item, "secret file " + path + " is empty");
      return std::nullopt;
    }
    if (st.st_mode & 044) {
      char mode[8];
      std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
      Warn(item, "secret file " + path + " may be read by its group or others (mode " + mode +
                     "): chmod 0600 it");
    }
    return text;
  }

  // `{secret_file: PATH}` or `{secret_env: NAME}`: the value is read at each load and reload,
  // never written in the config itself. `line_breaks`: whether the value may hold CR or LF (an
  // environment variable may; an HTTP header may not).
  std::optional<std::string> SecretRef(const Item& item, bool line_breaks) {
    std::optional<Entries> d = ReadMapping(item, kSecretRefKeys);
    if (!d) return std::nullopt;
    if (d->size() != 1) {
      if (!d->empty() || item.node.size() == 0)
        Error(item, "a secret reference is {secret_file: PATH} or {secret_env: NAME}: one of them");
      return std::nullopt;
    }
    std::optional<std::string> value;
    if (const Entry* e = Find(*d, "secret_file")) {
      if (auto path = Path(e->value)) value = ReadSecretFile(e->value, *path);
    } else if (const Entry* env = Find(*d, "secret_env")) {
      if (auto name = String(env->value)) {
        const char* v = std::getenv(name->c_str());
        if (!v) {
          Error(env->value, "environment variable '" + *name + "' is not set");
        } else if (*v == '\0') {
          Error(env->value, "environment variable '" + *name + "' is empty");
        } else {
          value = v;
        }
      }
    }
    if (!value) return std::nullopt;
    if (value->find('\0') != std::string::npos) {
      Error(item, "the secret holds a NUL byte");
      return std::nullopt;
    }
    if (!line_breaks && value->find_first_of("\r\n") != std::string::npos) {
      Error(item, "the secret holds a line break, which this value cannot carry");
      return std::nullopt;
    }
    AddSecret(item, *value);
    return value;
  }

  // A string, or a secret reference. A literal in a field whose name says it holds a secret
  // (`secret_name`) is redacted too. `expand`: ${VAR} expansion of a literal, as in paths.
  std::optional<std::string> StringOrSecret(const Item& item, bool secret_name, bool line_breaks,
                                            bool expand) {
    if (item.node.IsMap()) return SecretRef(item, line_breaks);
    std::optional<std::string> v = String(item);
    if (!v) return std::nullopt;
    if (expand) {
      v = Expand(item, *v);
      if (!v) return std::nullopt;
    }
    if (!line_breaks && v->find_first_of("\r\n") != std::string::npos) {
      Error(item, "holds a line break, which this value cannot carry");
      return std::nullopt;
    }
    if (secret_name && !v->empty()) AddSecret(item, *v);
    return v;
  }

  static bool ValidEnvName(const std::string& n) {
    return !n.empty() && !std::isdigit(static_cast<unsigned char>(n[0])) &&
           std::all_of(n.begin(), n.end(), [](char c) {
             return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
           });
  }

  // RFC 9110 token characters.
  static bool ValidHeaderName(const std::string& n) {
    return !n.empty() && std::all_of(n.begin(), n.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) ||
             std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    });
  }

  // A mapping of names to values (strings or secret references), each name checked by `valid`
  // and written once (`fold`: compared without case, as HTTP header names are).
  template <typename Value>
  bool ReadNamedValues(const Item& item, const std::string& what, bool (*valid)(const std::string&),
                       bool fold, std::map<std::string, std::string>* out, Value value_of) {
    if (!item.node.IsMap()) {
      Error(item, "expected a mapping of " + what + ": value, got " + Describe(item.node));
      return false;
    }
    bool ok = true;
    std::map<std::string, int> first_line;
    for (const auto& pair : item.node) {
      YAML::Node key = pair.first;
      if (!key.IsScalar()) {
        Error(key.Mark(), item.path + ": keys must be plain names, got " + Describe(key));
        ok = false;
        continue;
      }
      const std::string& name = key.Scalar();
      Item value = ValueItem(key, pair.second, Child(item.path, name));
      if (!valid(name)) {
        Error(key.Mark(), item.path + ": '" + name + "' is not a valid " + what);
        ok = false;
        continue;
      }
      auto [seen, inserted] = first_line.emplace(fold ? Lower(name) : name, key.Mark().line + 1);
      if (!inserted) {
        Error(key.Mark(), item.path + ": duplicate " + what + " '" + name + "' (first at line " +
                              std::to_string(seen->second) + ")");
        ok = false;
        continue;
      }
      if (auto v = value_of(name, value)) {
        (*out)[name] = std::move(*v);
      } else {
        ok = false;
      }
    }
    return ok;
  }

  // `env:` of a check or service: NAME: value, or NAME: {secret_file: ...}.
  void ReadEnv(const Item& item, std::map<std::string, std::string>* env) {
    ReadNamedValues(item, "environment variable name ([A-Za-z_][A-Za-z0-9_]*)", ValidEnvName, false,
                    env, [this](const std::string& name, const Item& value) {
                      return StringOrSecret(value, IsSecretName(name), true, true);
                    });
  }

  std::optional<StringMap> Headers(const Item& item) {
    StringMap out;
    bool ok = ReadNamedValues(item, "HTTP header name", ValidHeaderName, true, &out,
                              [this](const std::string& name, const Item& value) {
                                return StringOrSecret(value, IsSecretName(name), false, false);
                              });
    if (!ok) return std::nullopt;
    return out;
  }

  // `user:` and `group:`, resolved now so that a name this host does not know is an error
  // here, with its line, rather than a failed start later.
  void ReadRunAs(const Entries& d, RunAs* out) {
    RunAs r;
    if (const Entry* e = Find(d, "user")) {
      if (auto u = String(e->value)) {
        Status s =
            u->empty() ? Status::InvalidArgument("user name is empty") : ResolveRunAs(*u, "", &r);
        if (!s.ok()) Error(e->value, s.message());
      }
    }
    if (const Entry* e = Find(d, "group")) {
      if (auto g = String(e->value)) {
        int64_t gid = -1;
        Status s =
            g->empty() ? Status::InvalidArgument("group name is empty") : ResolveGroup(*g, &gid);
        if (s.ok()) {
          r.group = *g;
          r.gid = gid;
        } else {
          Error(e->value, s.message());
        }
      }
    }
    *out = std::move(r);
  }

  // `programs:`: absolute paths, or names looked up in `path_env` now, so the list holds the
  // very files that may run. A listed path with no program there yet is only warned about.
  std::optional<std::vector<std::string>> ReadPrograms(const Item& item,
                                                       const std::string& path_env) {
    auto names = StringList(item);
    if (!names) return std::vector<std::string>{};  // reported; an empty list runs nothing
    std::vector<std::string> out;
    for (size_t i = 0; i < names->size(); ++i) {
      const std::string& name = (*names)[i];
      Item at = SequenceItem(item, i);
      std::string file;
      Status s = FindProgram(name, path_env, &file);
      if (s.ok()) {
        out.push_back(name.find('/') == std::string::npos ? file : name);
      } else if (s.code() == Status::Code::kNotFound && name.find('/') != std::string::npos) {
        Warn(at, "no program at '" + name + "' yet; a playbook cannot start it until there is");
        out.push_back(name);
      } else if (s.code() == Status::Code::kNotFound) {
        Error(at, "no program named '" + name + "' in PATH (" + path_env + ")");
      } else {
        Error(at, s.message());
      }
    }
    return out;
  }

  // A check's own commands (on_fail, start, stop) are what its playbook starts: one the
  // program policy refuses is an error now, with its line, not when the incident comes.
  void CheckCommands(const std::vector<std::pair<std::string, Item>>& commands,
                     const CheckConfig& c) {
    for (const auto& [name, item] : commands) {
      std::vector<std::string> argv = ParamList(c.params, name);
      if (argv.empty()) continue;
      std::string file;
      Status s = ResolveProgram(argv[0], c.env, c.programs, &file);
      // A program not installed is left to fail when run, as it would anyway.
      if (!s.ok() && s.code() != Status::Code::kNotFound) Error(item, s.message());
    }
  }

  static Item SequenceItem(const Item& seq, size_t i) {
    YAML::Node n = seq.node[i];
    YAML::Mark m = ValidMark(n.Mark()) ? n.Mark() : seq.mark;
    return Item{n, m, seq.path + "[" + std::to_string(i) + "]"};
  }

  // Reads an integer key into `out` when present and valid; leaves the default otherwise.
  template <typename T>
  void IntField(const Entries& entries, std::string_view name, int64_t lo, int64_t hi, T* out) {
    if (const Entry* e = Find(entries, name)) {
      if (auto v = Int(e->value, lo, hi)) *out = static_cast<T>(*v);
    }
  }

  // jitter is a fraction of the interval; 1 would let two periods coincide.
  void JitterField(const Entries& entries, double* out) {
    const Entry* e = Find(entries, "jitter");
    if (!e) return;
    auto v = Number(e->value);
    if (!v) return;
    if (*v < 0 || *v >= 1) {
      Error(e->value, "must be in [0, 1), got " + e->value.node.Scalar());
      return;
    }
    *out = *v;
  }

  // ---- sections -------------------------------------------------------------------------------

  void ResolveBase(const std::string& base_dir) {
    std::error_code ec;
    base_ = fs::absolute(base_dir.empty() ? fs::path(".") : fs::path(base_dir), ec);
    if (ec) {
      ErrorAt(0, 0, "cannot resolve base folder '" + base_dir + "': " + ec.message());
      base_ = fs::path(base_dir);
    }
    base_ = base_.lexically_normal();
  }

  void ReadTop(const YAML::Node& root, Config& config) {
    Item top{root, ValidMark(root.Mark()) ? root.Mark() : YAML::Mark(), ""};
    if (!root.IsMap()) {
      Error(top.mark, "top level must be a mapping of keys (" + JoinNames(kTopKeys) + "), got " +
                          Describe(root));
      return;
    }
    std::optional<Entries> entries = ReadMapping(top, kTopKeys);
    if (!entries) return;

    if (const Entry* e = Find(*entries, "state_dir")) {
      if (auto p = Path(e->value)) config.state_dir = *p;
    } else {
      config.state_dir = "/var/lib/guardian";
    }

    if (const Entry* e = FindContainer(*entries, "playbook_dirs")) {
      ReadPlaybookDirs(e->value, config);
    } else {
      config.playbook_dirs = {(base_ / "playbooks").lexically_normal().string()};
    }

    if (const Entry* e = Find(*entries, "log_level")) {
      if (auto s = String(e->value)) {
        bool valid = std::any_of(std::begin(kLogLevels), std::end(kLogLevels),
                                 [&](std::string_view l) { return l == *s; });
        if (valid) {
          config.log_level = *s;
        } else {
          Error(e->value, "must be one of " + JoinNames(kLogLevels) + ", got '" + *s + "'" +
                              Suggest(*s, kLogLevels));
        }
      }
    }

    if (const Entry* e = Find(*entries, "mode")) {
      if (auto s = String(e->value)) {
        if (*s == "act" || *s == "observe") {
          config.observe = *s == "observe";
        } else {
          Error(e->value, "must be one of " + JoinNames(kRunModes) + ", got '" + *s + "'" +
                              Suggest(*s, kRunModes));
        }
      }
    }

    config.api.socket = (fs::path(config.state_dir) / "guardian.sock").string();
    if (const Entry* e = FindContainer(*entries, "api")) ReadApi(e->value, &config.api);
    if (const Entry* e = FindContainer(*entries, "fleet")) ReadFleet(e->value, &config.fleet);

    CheckDefaults defaults;
    if (const Entry* e = FindContainer(*entries, "defaults")) {
      if (auto d = ReadMapping(e->value, kDefaultsKeys)) {
        IntField(*d, "interval_ms", 10, kInt64Max, &defaults.interval_ms);
        IntField(*d, "debounce", 1, kIntMax, &defaults.debounce);
        JitterField(*d, &defaults.jitter);
      }
    }

    if (const Entry* e = FindContainer(*entries, "budget")) {
      ReadBudget(e->value, &config.budget);
    }

    if (const Entry* e = FindContainer(*entries, "breaker")) {
      ReadBudget(e->value, &config.breaker);
    }

    if (const Entry* e = FindContainer(*entries, "retry")) {
      ReadRetry(e->value, &config.retry);
    }

    if (const Entry* e = FindContainer(*entries, "playbook_limits")) {
      if (auto d = ReadMapping(e->value, kLimitsKeys)) {
        auto& limits = config.playbook_limits;
        IntField(*d, "instructions", 1000, kInt64Max, &limits.instructions);
        int64_t memory_mb = limits.memory_bytes >> 20;
        IntField(*d, "memory_mb", 1, 1024, &memory_mb);
        limits.memory_bytes = memory_mb << 20;
        IntField(*d, "phase_timeout_ms", 100, kInt64Max, &limits.phase_timeout_ms);
        if (const Entry* p = Find(*d, "programs"))
          limits.programs = ReadPrograms(p->value, kSpawnPath);
      }
    }

    if (const Entry* e = Find(*entries, "port_registry")) {
      if (auto p = Path(e->value)) config.port_registry = *p;
    } else {
      config.port_registry = (fs::path(config.state_dir) / "ports.json").string();
    }

    // Services before checks: a check's params.service must name one.
    if (const Entry* e = FindContainer(*entries, "services")) {
      ReadServices(e->value, config);
    }

    if (const Entry* e = FindContainer(*entries, "checks")) {
      ReadChecks(e->value, defaults, config);
    }
  }

  // A name as checks and services use it: [a-z0-9_-]+.
  static bool ValidId(const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
    });
  }

  void ReadServices(const Item& item, Config& config) {
    if (!item.node.IsSequence()) {
      Error(item, "expected a sequence of services, got " + Describe(item.node));
      return;
    }
    std::map<std::string, int> first_line;
    for (size_t i = 0; i < item.node.size(); ++i) {
      Item service_item = SequenceItem(item, i);
      std::optional<ServiceConfig> service = ReadService(service_item, config.state_dir);
      if (!service) continue;
      auto [seen, inserted] = first_line.emplace(service->name, service->line);
      if (!inserted) {
        Error(service_item, "duplicate service name '" + service->name +
                                "' (first defined at line " + std::to_string(seen->second) + ")");
        continue;
      }
      config.services.push_back(std::move(*service));
    }
  }

  std::optional<ServiceConfig> ReadService(const Item& item, const std::string& state_dir) {
    std::optional<Entries> d = ReadMapping(item, kServiceKeys);
    if (!d) return std::nullopt;
    size_t errors_before = errors_.size();
    ServiceConfig s;
    s.line = item.mark.line + 1;
    s.cwd = base_.string();

    if (const Entry* e = Find(*d, "name")) {
      if (auto v = String(e->value)) {
        if (ValidId(*v)) {
          s.name = *v;
        } else {
          Error(e->value,
                "'" + *v + "' is not a valid service name: use only a-z, 0-9, '_' and '-'");
        }
      }
    } else {
      Error(item, "missing required key 'name'");
    }

    if (const Entry* e = Find(*d, "argv")) {
      if (auto v = StringList(e->value)) {
        for (size_t i = 0; i < v->size(); ++i) {
          Item elem = SequenceItem(e->value, i);
          if (auto x = Expand(elem, (*v)[i])) s.argv.push_back(*x);
        }
        if (v->empty()) {
          Error(e->value, "argv must name a program: it is an argv vector, never a shell line");
        } else if (s.argv.size() == v->size() && s.argv[0].find('/') != std::string::npos) {
          // A program given by path resolves like every other path in the file.
          if (auto p = Path(SequenceItem(e->value, 0))) s.argv[0] = *p;
        }
      }
    } else {
      Error(item, "missing required key 'argv' (the program and its arguments, as a list)");
    }

    if (const Entry* e = Find(*d, "cwd")) {
      if (auto p = Path(e->value)) s.cwd = *p;
    }
    if (const Entry* e = FindContainer(*d, "env")) ReadEnv(e->value, &s.env);
    ReadRunAs(*d, &s.run_as);
    if (const Entry* e = Find(*d, "status_file")) {
      if (auto p = Path(e->value)) s.status_file = *p;
    }
    if (const Entry* e = Find(*d, "flags_file")) {
      if (auto p = Path(e->value)) s.flags_file = *p;
    }
    if (const Entry* e = Find(*d, "output")) {
      if (auto p = Path(e->value)) s.output = *p;
    } else if (!s.name.empty()) {
      s.output = (fs::path(state_dir) / "services" / (s.name + ".log")).string();
    }

    if (const Entry* e = FindContainer(*d, "port")) ReadServicePort(e->value, &s);

    if (const Entry* e = FindContainer(*d, "restart")) {
      if (auto r = ReadMapping(e->value, kServiceRestartKeys)) {
        IntField(*r, "backoff_base_ms", 10, kInt64Max, &s.backoff_base_ms);
        IntField(*r, "backoff_max_ms", 10, kInt64Max, &s.backoff_max_ms);
        IntField(*r, "healthy_after_ms", 0, kInt64Max, &s.healthy_after_ms);
        if (const Entry* max = Find(*r, "backoff_max_ms");
            max && s.backoff_max_ms < s.backoff_base_ms) {
          Error(max->value, "must be >= backoff_base_ms (" + std::to_string(s.backoff_base_ms) +
                                "), got " + std::to_string(s.backoff_max_ms));
        }
      }
    }
    IntField(*d, "stop_grace_ms", 0, 600'000, &s.stop_grace_ms);
    if (const Entry* e = Find(*d, "stop_on_exit")) {
      if (auto b = Bool(e->value)) s.stop_on_exit = *b;
    }
    if (const Entry* e = Find(*d, "cgroup")) {
      if (auto p = Path(e->value)) s.cgroup = *p;
    }
    IntField(*d, "memory_limit_mb", 1, 1 << 30, &s.memory_limit_mb);
    if (const Entry* e = Find(*d, "memory_limit_mb"); e && s.cgroup.empty()) {
      Error(e->value, "needs 'cgroup': the memory cgroup folder the limit is set on");
    }

    if (errors_.size() != errors_before) return std::nullopt;
    return s;
  }

  void ReadServicePort(const Item& item, ServiceConfig* s) {
    std::optional<Entries> d = ReadMapping(item, kServicePortKeys);
    if (!d) return;
    const Entry* preferred = Find(*d, "preferred");
    if (!preferred) {
      Error(item, "missing required key 'preferred' (the port the service normally listens on)");
      return;
    }
    auto port = Int(preferred->value, 1, 65'535);
    if (!port) return;
    s->port_preferred = static_cast<int>(*port);
    s->port_lo = s->port_hi = s->port_preferred;
    if (const Entry* e = Find(*d, "range")) {
      const Item& r = e->value;
      if (!r.node.IsSequence() || r.node.size() != 2) {
        Error(r, "expected [first, last], got " + Describe(r.node));
        return;
      }
      auto lo = Int(SequenceItem(r, 0), 1, 65'535);
      auto hi = Int(SequenceItem(r, 1), 1, 65'535);
      if (!lo || !hi) return;
      if (*lo > *hi || *port < *lo || *port > *hi) {
        Error(r, "range [" + std::to_string(*lo) + ", " + std::to_string(*hi) +
                     "] must be ordered and hold the preferred port " + std::to_string(*port));
        return;
      }
      s->port_lo = static_cast<int>(*lo);
      s->port_hi = static_cast<int>(*hi);
    }
  }

  void ReadPlaybookDirs(const Item& item, Config& config) {
    if (!item.node.IsSequence()) {
      Error(item, "expected a sequence of paths, got " + Describe(item.node));
      return;
    }
    if (item.node.size() == 0) {
      Error(item, "must list at least one folder of playbooks");
      return;
    }
    for (size_t i = 0; i < item.node.size(); ++i) {
      if (auto p = Path(SequenceItem(item, i))) config.playbook_dirs.push_back(*p);
    }
  }

  void ReadFleet(const Item& item, FleetConfig* fleet) {
    std::optional<Entries> d = ReadMapping(item, kFleetKeys);
    if (!d) return;
    fleet->enabled = true;
    if (const Entry* e = Find(*d, "name")) {
      if (auto s = String(e->value)) {
        if (ValidId(*s)) {
          fleet->name = *s;
        } else {
          Error(e->value, "must be a name of a-z, 0-9, '_' and '-', got '" + *s + "'");
        }
      }
    } else {
      Error(item, "missing required key 'name' (the fleet's name, shared by its hosts)");
    }
    if (const Entry* e = Find(*d, "host")) {
      if (auto s = String(e->value)) {
        if (ValidHostId(*s)) {
          fleet->host = *s;
        } else {
          Error(e->value,
                "must be a host id of letters, digits, '.', '_' and '-', got '" + *s + "'");
        }
      }
    } else {
      char name[256] = {0};
      if (::gethostname(name, sizeof(name) - 1) == 0 && ValidHostId(name)) {
        fleet->host = name;
      } else {
        Error(item, "missing key 'host': this host's name cannot serve as its id");
      }
    }
    if (const Entry* e = Find(*d, "endpoints")) {
      if (auto list = StringList(e->value)) {
        if (list->empty()) Error(e->value, "needs at least one etcd endpoint");
        for (size_t i = 0; i < list->size(); ++i) {
          std::string url = (*list)[i];
          while (!url.empty() && url.back() == '/') url.pop_back();
          if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
            Error(SequenceItem(e->value, i),
                  "must be an etcd client URL (http://HOST:PORT or https://HOST:PORT), got '" +
                      (*list)[i] + "'");
          } else {
            fleet->endpoints.push_back(url);
          }
        }
      }
    } else {
      Error(item, "missing required key 'endpoints' (etcd client URLs)");
    }
    if (const Entry* e = FindContainer(*d, "tls")) {
      if (auto t = ReadMapping(e->value, kFleetTlsKeys)) {
        for (auto [key, out] :
             {std::pair{"ca_file", &fleet->ca_file}, std::pair{"cert_file", &fleet->cert_file},
              std::pair{"key_file", &fleet->key_file}}) {
          if (const Entry* f = Find(*t, key)) {
            if (auto p = Path(f->value)) *out = *p;
          }
        }
        if (fleet->cert_file.empty() != fleet->key_file.empty())
          Error(e->value, "cert_file and key_file go together (a client certificate and its key)");
      }
    }
    IntField(*d, "lease_ttl_s", 2, 300, &fleet->lease_ttl_s);
    // Keep-alives go every third of the TTL: one request must fit in that.
    fleet->request_timeout_ms = std::min<int64_t>(2000, fleet->lease_ttl_s * 1000 / 4);
    IntField(*d, "request_timeout_ms", 100, 60'000, &fleet->request_timeout_ms);
    if (fleet->request_timeout_ms >= fleet->lease_ttl_s * 1000 / 3) {
      if (const Entry* e = Find(*d, "request_timeout_ms"))
        Error(e->value, "must be under a third of lease_ttl_s (" +
                            std::to_string(fleet->lease_ttl_s * 1000 / 3) +
                            " ms), or one slow request would let the lease expire");
    }
    if (const Entry* e = FindContainer(*d, "reconnect")) {
      if (auto r = ReadMapping(e->value, kFleetReconnectKeys)) {
        IntField(*r, "base_ms", 100, 3'600'000, &fleet->reconnect_base_ms);
        IntField(*r, "max_ms", 100, 3'600'000, &fleet->reconnect_max_ms);
        if (fleet->reconnect_max_ms < fleet->reconnect_base_ms)
          Error(e->value, "max_ms must be at least base_ms");
      }
    }
    if (const Entry* e = FindContainer(*d, "budgets")) {
      if (!e->value.node.IsMap()) {
        Error(e->value, "expected a mapping of mode: {max_concurrent, min_healthy}, got " +
                            Describe(e->value.node));
        return;
      }
      std::vector<std::string_view> names = {"default"};
      for (const auto& m : AllModes()) names.push_back(m.id);
      std::optional<Entries> modes = ReadMapping(e->value, names, "mode", " in fleet.budgets");
      if (!modes) return;
      for (const auto& [mode, entry] : *modes) {
        FleetSlotBudget b;
        if (auto m = ReadMapping(entry.value, kFleetBudgetKeys)) {
          IntField(*m, "max_concurrent", 1, 100'000, &b.max_concurrent);
          IntField(*m, "min_healthy", 0, 100'000, &b.min_healthy);
        }
        if (mode == "default") {
          fleet->default_budget = b;
        } else {
          fleet->budgets[mode] = b;
        }
      }
    }
  }

  static bool ValidHostId(const std::string& s) {
    return !s.empty() && s.size() <= 253 && std::all_of(s.begin(), s.end(), [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-';
    });
  }

  void ReadApi(const Item& item, ApiConfig* api) {
    std::optional<Entries> d = ReadMapping(item, kApiKeys);
    if (!d) return;
    if (const Entry* e = Find(*d, "socket")) {
      if (auto p = Path(e->value)) {
        // sun_path holds 108 bytes with the terminating NUL.
        if (p->size() > 107) {
          Error(e->value, "socket path is " + std::to_string(p->size()) +
                              " bytes; a Unix socket path must be at most 107");
        } else {
          api->socket = *p;
        }
      }
    }
    if (const Entry* e = Find(*d, "socket_mode")) {
      // Read as text and parsed as octal, quoted or not, so 0660 never means decimal 660.
      if (auto s = String(e->value)) {
        bool octal =
            !s->empty() && s->size() <= 4 && s->find_first_not_of("01234567") == std::string::npos;
        int mode = octal ? std::stoi(*s, nullptr, 8) : -1;
        if (!octal) {
          Error(e->value, "must be an octal file mode such as \"0660\", got '" + *s + "'");
        } else if (mode & ~0777) {
          Error(e->value, "must be permission bits only (at most 0777), got '" + *s + "'");
        } else if (mode & 07) {
          Error(e->value, "must not let others connect (mode " + *s +
                              " grants access to others); the API can change what Guardian does");
        } else {
          api->socket_mode = mode;
        }
      }
    }
    if (const Entry* e = Find(*d, "socket_group")) {
      if (auto g = String(e->value)) {
        Status s = g->empty() ? Status::InvalidArgument("group name is empty")
                              : ResolveGroup(*g, &api->socket_gid);
        if (s.ok()) {
          api->socket_group = *g;
        } else {
          Error(e->value, s.message());
        }
      }
    }
    bool allow_remote = false;
    if (const Entry* e = Find(*d, "allow_remote")) {
      if (auto b = Bool(e->value)) allow_remote = *b;
    }
    api->allow_remote = allow_remote;
    if (const Entry* e = Find(*d, "tcp")) {
      if (auto s = String(e->value)) {
        std::string host;
        int port = 0;
        std::string why;
        if (!SplitHostPort(*s, &host, &port, &why)) {
          Error(e->value, why);
        } else if (!allow_remote && !IsLoopbackHost(host)) {
          Error(e->value, "'" + host +
                              "' is not a loopback address; the API listens only on loopback "
                              "unless api.allow_remote is true");
        } else {
          api->tcp = *s;
        }
      }
    }
    IntField(*d, "max_connections", 1, 65'536, &api->max_connections);
    IntField(*d, "request_timeout_ms", 100, 3'600'000, &api->request_timeout_ms);
    IntField(*d, "max_body_bytes", 1'024, 64 << 20, &api->max_body_bytes);
  }

  void ReadBudget(const Item& item, Budget* budget) {
    if (auto d = ReadMapping(item, kBudgetKeys)) {
      IntField(*d, "max_actions", 1, kIntMax, &budget->max_actions);
      IntField(*d, "window_ms", 1000, kInt64Max, &budget->window_ms);
    }
  }

  void ReadRetry(const Item& item, RetryPolicy* retry) {
    std::optional<Entries> d = ReadMapping(item, kRetryKeys);
    if (!d) return;
    RetryPolicy r = *retry;
    bool ok = true;
    const Entry* base = Find(*d, "backoff_base_ms");
    const Entry* max = Find(*d, "backoff_max_ms");
    if (base) {
      auto v = Int(base->value, 1, kInt64Max);
      ok = ok && v;
      if (v) r.backoff_base_ms = *v;
    }
    if (max) {
      auto v = Int(max->value, 1, kInt64Max);
      ok = ok && v;
      if (v) r.backoff_max_ms = *v;
    }
    if (ok && r.backoff_max_ms < r.backoff_base_ms) {
      if (max) {
        Error(max->value, "must be >= backoff_base_ms (" + std::to_string(r.backoff_base_ms) +
                              "), got " + std::to_string(r.backoff_max_ms));
      } else {
        Error(base->value, "must be <= backoff_max_ms (" + std::to_string(r.backoff_max_ms) +
                               " by default), got " + std::to_string(r.backoff_base_ms));
      }
      return;
    }
    *retry = r;
  }

  void ReadChecks(const Item& item, const CheckDefaults& defaults, Config& config) {
    if (!item.node.IsSequence()) {
      Error(item, "expected a sequence of checks, got " + Describe(item.node));
      return;
    }
    std::map<std::string, int> first_line;  // id -> line of its first definition
    for (size_t i = 0; i < item.node.size(); ++i) {
      Item check_item = SequenceItem(item, i);
      if (const YAML::Node& n = check_item.node; n.IsMap() && n["targets"]) {
        ReadTemplate(check_item, defaults, config);
        continue;
      }
      std::optional<CheckConfig> check = ReadCheck(check_item, defaults, config);
      if (!check) continue;
      config.checks.push_back(std::move(*check));
    }
    // Duplicates are judged after every check was read, so one bad check does not hide them.
    for (size_t i = 0; i < checks_ids_.size(); ++i) {
      const auto& [id, id_item] = checks_ids_[i];
      auto [seen, inserted] = first_line.emplace(id, id_item.mark.line + 1);
      if (!inserted) {
        Error(id_item, "duplicate check id '" + id + "' (first defined at line " +
                           std::to_string(seen->second) + ")");
      }
    }
    CheckDependencies(config);
  }

  // A check template: one entry with `targets`, a list of mappings that each give an `id` and
  // the params that differ (`{id: web, port: 8080}`), becomes one check per target. Each is read
  // as if written out in full, so an error in a target names that target's line; an error in
  // the template itself would repeat for every target, so expansion stops at the first target
  // that has one.
  void ReadTemplate(const Item& item, const CheckDefaults& defaults, Config& config) {
    const YAML::Node& node = item.node;  // const: a look-up must not add the key it looks for
    Item targets{node["targets"], node["targets"].Mark(), Child(item.path, "targets")};
    if (!ValidMark(targets.mark)) targets.mark = item.mark;
    if (node["id"]) {
      Error(item, "a check template takes its ids from `targets`; remove its `id`");
      return;
    }
    if (!targets.node.IsSequence() || targets.node.size() == 0) {
      Error(targets, "expected a non-empty sequence of targets ({id: ..., PARAM: ...}), got " +
                         Describe(targets.node));
      return;
    }
    // The expanded checks are built as children of one scratch node. yaml-cpp merges the
    // memory of every node assigned into another: fresh nodes per target would each copy the
    // whole document's node set (quadratic: 0.5 GB for 1000 targets); children of one node
    // share its memory, merged once.
    YAML::Node scratch(YAML::NodeType::Map);
    for (size_t i = 0; i < targets.node.size(); ++i) {
      Item target = SequenceItem(targets, i);
      const YAML::Node& tn = target.node;
      if (!tn.IsMap()) {
        Error(target,
              "a target is a mapping with an `id` and the params it sets, got " + Describe(tn));
        continue;
      }
      if (!tn["id"]) {
        Error(target, "missing required key 'id' (each target names its check)");
        continue;
      }
      YAML::Node check = scratch["check"];
      YAML::Node params = scratch["params"];
      check = YAML::Node(YAML::NodeType::Map);
      params = YAML::Node(YAML::NodeType::Map);
      for (const auto& pair : node) {
        if (pair.first.IsScalar() && pair.first.Scalar() == "targets") continue;
        check[pair.first] = pair.second;
      }
      if (node["params"] && node["params"].IsMap()) {
        for (const auto& pair : node["params"]) params[pair.first] = pair.second;
      }
      for (const auto& pair : tn) {
        if (pair.first.IsScalar() && pair.first.Scalar() == "id") {
          check["id"] = pair.second;
        } else {
          // The target's value replaces the template's; its own key node keeps its position.
          if (pair.first.IsScalar()) params.remove(pair.first.Scalar());
          params[pair.first] = pair.second;
        }
      }
      if (params.size() > 0 || node["params"]) check["params"] = params;
      size_t errors_before = errors_.size();
      std::optional<CheckConfig> c =
          ReadCheck(Item{check, target.mark, target.path}, defaults, config);
      if (c) config.checks.push_back(std::move(*c));
      if (errors_.size() != errors_before && i == 0) return;
    }
  }

  // depends_on names other checks of this config, and never leads back to the check itself
  // (a cycle would leave every check in it waiting on another).
  void CheckDependencies(const Config& config) {
    std::vector<std::string_view> ids;
    for (const auto& [id, item] : checks_ids_) ids.push_back(id);
    bool names_ok = true;
    for (const auto& d : depends_items_) {
      if (d.dep == d.check) {
        Error(d.item, "check '" + d.check + "' cannot depend on itself");
        names_ok = false;
      } else if (std::find(ids.begin(), ids.end(), d.dep) == ids.end()) {
        Error(d.item, "no check with id '" + d.dep + "'" + Suggest(d.dep, ids));
        names_ok = false;
      }
    }
    if (!names_ok) return;
    std::map<std::string, const CheckConfig*> by_id;
    for (const auto& c : config.checks) by_id[c.id] = &c;
    for (const auto& d : depends_items_) {
      // Follow d.dep's dependencies: reaching d.check again is a cycle.
      std::vector<std::string> path{d.check, d.dep};
      if (LeadsTo(by_id, d.dep, d.check, &path)) {
        std::string chain;
        for (const auto& id : path) chain += (chain.empty() ? "" : " -> ") + id;
        Error(d.item, "depends_on makes a cycle: " + chain);
        return;  // one cycle is reported once, not from each of its checks
      }
    }
  }

  static bool LeadsTo(const std::map<std::string, const CheckConfig*>& by_id,
                      const std::string& from, const std::string& to,
                      std::vector<std::string>* path) {
    auto it = by_id.find(from);
    if (it == by_id.end()) return false;
    for (const auto& next : it->second->depends_on) {
      if (std::find(path->begin() + 1, path->end(), next) != path->end()) continue;  // seen
      path->push_back(next);
      if (next == to || LeadsTo(by_id, next, to, path)) return true;
      path->pop_back();
    }
    return false;
  }

  struct DependsItem {
    std::string check;  // the check whose depends_on lists it
    std::string dep;
    Item item;
  };
  std::vector<DependsItem> depends_items_;

  std::optional<CheckConfig> ReadCheck(const Item& item, const CheckDefaults& defaults,
                                       const Config& config) {
    std::optional<Entries> d = ReadMapping(item, kCheckKeys);
    if (!d) return std::nullopt;
    size_t errors_before = errors_.size();

    CheckConfig c;
    c.target_ms = 0;  // set from the mode below; a check without a valid mode is dropped
    c.line = item.mark.line + 1;
    c.interval_ms = defaults.interval_ms;
    c.debounce = defaults.debounce;
    c.jitter = defaults.jitter;
    c.budget = config.budget;

    if (const Entry* e = Find(*d, "id")) {
      if (auto s = String(e->value)) {
        if (ValidId(*s)) {
          c.id = *s;
          checks_ids_.emplace_back(*s, e->value);
        } else {
          Error(e->value, "'" + *s + "' is not a valid check id: use only a-z, 0-9, '_' and '-'");
        }
      }
    } else {
      Error(item, "missing required key 'id'");
    }

    const std::vector<ParamSpec>* specs = nullptr;
    bool mode_ok = false;
    if (const Entry* e = Find(*d, "mode")) {
      if (auto s = String(e->value)) {
        std::vector<std::string_view> ids;
        for (const auto& m : AllModes()) ids.push_back(m.id);
        if (const ModeInfo* mode = FindMode(*s)) {
          c.mode = *s;
          c.target_ms = mode->target_ms;
          specs = schemas_ ? schemas_(*s) : nullptr;
          if (specs) {
            mode_ok = true;
          } else {
            Error(e->value, "mode '" + *s + "' has no detector in this build");
          }
        } else {
          Error(e->value,
                "unknown mode '" + *s + "'" + Suggest(*s, ids) + "; valid modes: " + ModeList());
        }
      }
    } else {
      Error(item, "missing required key 'mode'");
    }

    IntField(*d, "interval_ms", 10, kInt64Max, &c.interval_ms);
    IntField(*d, "debounce", 1, kIntMax, &c.debounce);
    JitterField(*d, &c.jitter);
    IntField(*d, "target_ms", 1, kInt64Max, &c.target_ms);

    if (const Entry* e = Find(*d, "playbook")) {
      if (auto s = String(e->value)) {
        if (s->empty()) {
          Error(e->value, "playbook name is empty");
        } else {
          c.playbook = *s;
        }
      }
    } else if (const ModeInfo* mode = FindMode(c.mode)) {
      c.playbook = std::string(mode->playbook);
    }

    if (const Entry* e = Find(*d, "retries")) {
      if (auto v = Int(e->value, 0, 10)) c.retries = static_cast<int>(*v);
    }

    if (const Entry* e = FindContainer(*d, "budget")) ReadBudget(e->value, &c.budget);
    if (const Entry* e = FindContainer(*d, "env")) ReadEnv(e->value, &c.env);
    ReadRunAs(*d, &c.run_as);
    c.programs = config.playbook_limits.programs;
    if (const Entry* e = Find(*d, "programs"))
      c.programs = ReadPrograms(e->value, ProgramSearchPath(c.env));

    if (const Entry* e = FindContainer(*d, "depends_on")) {
      if (auto deps = StringList(e->value)) {
        c.depends_on = *deps;
        // Judged once every check is read: the ids may come later in the file.
        for (size_t i = 0; i < deps->size(); ++i)
          depends_items_.push_back({c.id, (*deps)[i], SequenceItem(e->value, i)});
      }
    }

    const Entry* params = FindContainer(*d, "params");
    if (mode_ok) {
      YAML::Mark missing_at = item.mark;
      if (const Entry* e = Find(*d, "params")) missing_at = e->key.Mark();
      std::vector<std::pair<std::string, Item>> commands;
      ReadParams(params ? &params->value : nullptr, item.path + ".params", missing_at, c.mode,
                 *specs, &c.params, &commands);
      CheckCommands(commands, c);
      CheckServiceParam(params, config, c.params);
    } else if (params && !params->value.node.IsMap()) {
      Error(params->value, "expected a mapping, got " + Describe(params->value.node));
    }

    if (errors_.size() != errors_before) return std::nullopt;
    return c;
  }

  // A check that acts on a service (params.service, and params.server for a second one such as
  // a model server) must name one Guardian supervises.
  void CheckServiceParam(const Entry* params, const Config& config, const Params& values) {
    for (const char* param : {"service", "server"}) {
      auto it = values.find(param);
      if (!params || it == values.end()) continue;
      const auto* name = std::get_if<std::string>(&it->second);
      if (!name || config.FindService(*name)) continue;
      std::vector<std::string_view> names;
      for (const auto& s : config.services) names.push_back(s.name);
      // Emplaced, never assigned: YAML::Node's operator= writes through to the node it refers
      // to (here the params mapping being iterated, whose entries it would free), not rebinds.
      std::optional<Item> at;
      for (const auto& pair : params->value.node) {
        YAML::Node key = pair.first;
        if (key.IsScalar() && key.Scalar() == param) {
          at.emplace(ValueItem(key, pair.second, Child(params->value.path, param)));
        }
      }
      Error(at ? *at : params->value,
            "no service named '" + *name + "'" + Suggest(*name, names) +
                (names.empty() ? "; add it under services:" : "; services: " + JoinNames(names)));
    }
  }

  void ReadParams(const Item* item, const std::string& path, const YAML::Mark& missing_at,
                  const std::string& mode, const std::vector<ParamSpec>& specs, Params* out,
                  std::vector<std::pair<std::string, Item>>* commands = nullptr) {
    std::optional<Entries> d;
    if (item) {
      std::vector<std::string_view> names;
      for (const auto& s : specs) names.push_back(s.name);
      d = ReadMapping(*item, names, "param", " for mode '" + mode + "'");
      if (!d) return;  // not a mapping: already reported, and nothing to check against it
    }
    for (const auto& spec : specs) {
      const Entry* e = d ? Find(*d, spec.name) : nullptr;
      if (!e) {
        if (spec.required) {
          std::string doc = spec.doc.empty() ? "" : " (" + spec.doc + ")";
          Error(missing_at, path + ": missing required param '" + spec.name + "' for mode '" +
                                mode + "'" + doc);
        }
        continue;
      }
      auto v = ReadParam(e->value, spec.type);
      if (!v) continue;
      if (const auto* text = std::get_if<std::string>(&*v);
          text && !spec.choices.empty() &&
          std::find(spec.choices.begin(), spec.choices.end(), *text) == spec.choices.end()) {
        Error(e->value, "must be one of " + JoinNames(spec.choices) + ", got '" + *text + "'");
        continue;
      }
      if (const auto* text = std::get_if<std::string>(&*v);
          text && spec.type == ParamType::kString) {
        if (IsSecretName(spec.name) && !text->empty()) AddSecret(e->value, *text);
        // https://user:password@host/: the password is a secret wherever the URL is echoed.
        if (std::string pw = UrlPassword(*text); !pw.empty()) AddSecret(e->value, pw);
      }
      if (commands && spec.type == ParamType::kCommand) commands->push_back({spec.name, e->value});
      out->emplace(spec.name, std::move(*v));
    }
  }

  std::optional<ParamValue> ReadParam(const Item& item, ParamType type) {
    switch (type) {
      case ParamType::kBool:
        if (auto v = Bool(item)) return *v;
        break;
      case ParamType::kInt:
        if (auto v = Int(item, INT64_MIN, kInt64Max)) return *v;
        break;
      case ParamType::kNumber:
        if (auto v = Number(item)) return *v;
        break;
      case ParamType::kString:
        if (auto v = String(item)) return *v;
        break;
      case ParamType::kPath:
        if (auto v = Path(item)) return *v;
        break;
      case ParamType::kStringList:
      case ParamType::kCommand:
        if (auto v = StringList(item)) return *v;
        break;
      case ParamType::kPathList:
        if (auto v = StringList(item, true)) return *v;
        break;
      case ParamType::kHeaders:
        if (auto v = Headers(item)) return *v;
        break;
    }
    return std::nullopt;
  }

  std::string file_;
  const ParamSchemaLookup& schemas_;
  fs::path base_;
  std::vector<ConfigError> errors_;
  std::vector<ConfigError> warnings_;
  std::vector<std::string> secrets_;
  std::vector<std::pair<std::string, Item>> checks_ids_;  // every valid id, in file order
};

}  // namespace

ConfigLoad LoadConfigText(std::string_view text, const std::string& file_name,
                          const std::string& base_dir, const ParamSchemaLookup& schemas) {
  return Loader(file_name, schemas).Load(text, base_dir, "");
}

ConfigLoad LoadConfigFile(const std::string& path, const ParamSchemaLookup& schemas) {
  auto fail = [&](const std::string& message) {
    ConfigLoad out;
    out.errors.push_back(ConfigError{path, 0, 0, message});
    return out;
  };
  std::error_code ec;
  if (fs::is_directory(path, ec)) return fail("cannot read: is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(std::string("cannot read: ") + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return fail(std::string("cannot read: ") + std::strerror(errno));

  fs::path abs = fs::absolute(fs::path(path), ec);
  if (ec) return fail("cannot resolve path: " + ec.message());
  abs = abs.lexically_normal();
  // Errors name the file as the operator wrote it; Config::path records it absolute.
  return Loader(path, schemas).Load(text.str(), abs.parent_path().string(), abs.string());
}

}  // namespace guardian
