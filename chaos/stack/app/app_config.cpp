// Reads the demo app's YAML config. Unknown keys are ignored; a value of the wrong type or out of
// range is an error that names the file, line, column and field.

#include "chaos/stack/app/app_config.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <set>
#include <stdexcept>

namespace demoapp {

namespace fs = std::filesystem;

const std::vector<ChunkConfig>& DefaultChunks() {
  static const std::vector<ChunkConfig> chunks = {{"listen", true, 0},
                                                  {"database", true, 20},
                                                  {"cache_warm", false, 0},
                                                  {"search_index", false, 30},
                                                  {"plugins", false, 20}};
  return chunks;
}

namespace {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reads typed values out of the document; every failure throws ConfigError with the position.
class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void Fail(const YAML::Node& node, const std::string& field,
                         const std::string& problem) const {
    std::string where = path_;
    YAML::Mark mark = node.Mark();
    if (!mark.is_null()) {
      where +=
          ": line " + std::to_string(mark.line + 1) + ", column " + std::to_string(mark.column + 1);
    }
    throw ConfigError(where + ": " + field + ": " + problem);
  }

  // The mapping at `key`, or a null node when absent or empty.
  YAML::Node Section(const YAML::Node& parent, const char* key, const std::string& field) const {
    YAML::Node node = parent[key];
    if (!node || node.IsNull()) return YAML::Node();
    if (!node.IsMap()) Fail(node, field, "expected a mapping");
    return node;
  }

  static YAML::Node Get(const YAML::Node& section, const char* key) {
    if (!section || !section.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    return section[key];
  }

  void Int(const YAML::Node& section, const char* key, const std::string& field, int64_t min,
           int64_t max, int64_t* out) const {
    YAML::Node node = Get(section, key);
    if (!node) return;
    if (!node.IsScalar()) Fail(node, field, "expected an integer");
    // A quoted scalar is a string even when it looks like a number.
    if (node.Tag() == "!") Fail(node, field, "expected an integer, got \"" + node.Scalar() + "\"");
    int64_t v = 0;
    try {
      v = node.as<int64_t>();
    } catch (const YAML::Exception&) {
      Fail(node, field, "expected an integer, got \"" + node.Scalar() + "\"");
    }
    if (v < min || v > max) {
      Fail(node, field,
           std::to_string(v) + " is out of range [" + std::to_string(min) + ", " +
               std::to_string(max) + "]");
    }
    *out = v;
  }

  void Bool(const YAML::Node& section, const char* key, const std::string& field, bool* out) const {
    YAML::Node node = Get(section, key);
    if (!node) return;
    if (!node.IsScalar() || node.Tag() == "!" ||
        (node.Scalar() != "true" && node.Scalar() != "false")) {
      Fail(node, field, "expected true or false");
    }
    *out = node.Scalar() == "true";
  }

  void String(const YAML::Node& section, const char* key, const std::string& field,
              std::string* out) const {
    YAML::Node node = Get(section, key);
    if (!node) return;
    if (!node.IsScalar() || node.Scalar().empty()) Fail(node, field, "expected a non-empty string");
    *out = node.Scalar();
  }

  // A path, made absolute against the config file's folder.
  void Path(const YAML::Node& section, const char* key, const std::string& field,
            const std::string& base, std::string* out) const {
    std::string value = *out;
    String(section, key, field, &value);
    fs::path p(value);
    if (p.is_relative()) p = fs::path(base) / p;
    *out = p.lexically_normal().string();
  }

 private:
  std::string path_;
};

void ReadChunks(const Reader& r, const YAML::Node& boot, AppConfig* cfg) {
  YAML::Node list = Reader::Get(boot, "chunks");
  if (!list || list.IsNull()) {
    cfg->chunks = DefaultChunks();
    return;
  }
  if (!list.IsSequence()) r.Fail(list, "boot.chunks", "expected a sequence");
  std::set<std::string> seen;
  cfg->chunks.clear();
  for (size_t i = 0; i < list.size(); ++i) {
    YAML::Node item = list[i];
    std::string field = "boot.chunks[" + std::to_string(i) + "]";
    if (!item.IsMap()) r.Fail(item, field, "expected a mapping with name, critical, ms");
    ChunkConfig chunk;
    r.String(item, "name", field + ".name", &chunk.name);
    const ChunkConfig* known = nullptr;
    for (const ChunkConfig& c : DefaultChunks()) {
      if (c.name == chunk.name) known = &c;
    }
    if (chunk.name.empty()) r.Fail(item, field + ".name", "missing");
    if (!known) {
      r.Fail(item["name"], field + ".name",
             "unknown chunk '" + chunk.name +
                 "' (known: listen, database, cache_warm, search_index, plugins)");
    }
    if (!seen.insert(chunk.name).second) {
      r.Fail(item["name"], field + ".name", "chunk '" + chunk.name + "' is listed twice");
    }
    chunk.critical = known->critical;
    r.Bool(item, "critical", field + ".critical", &chunk.critical);
    r.Int(item, "ms", field + ".ms", 0, 600000, &chunk.ms);
    if (chunk.name == "listen") {
      if (i != 0) r.Fail(item, field + ".name", "'listen' must be the first chunk");
      chunk.critical = true;  // without the socket there is no service at all
    }
    cfg->chunks.push_back(chunk);
  }
  if (cfg->chunks.empty() || cfg->chunks[0].name != "listen") {
    r.Fail(list, "boot.chunks", "the first chunk must be 'listen'");
  }
}

void ReadAll(const Reader& r, const YAML::Node& root, AppConfig* cfg) {
  if (root && !root.IsNull() && !root.IsMap()) r.Fail(root, "(top level)", "expected a mapping");
  const std::string& base = cfg->dir;
  int64_t v = 0;

  YAML::Node server = r.Section(root, "server", "server");
  v = cfg->port;
  r.Int(server, "port", "server.port", 0, 65535, &v);
  cfg->port = static_cast<int>(v);
  r.String(server, "host", "server.host", &cfg->host);
  v = cfg->workers;
  r.Int(server, "workers", "server.workers", 1, 256, &v);
  cfg->workers = static_cast<int>(v);

  YAML::Node db = r.Section(root, "database", "database");
  cfg->db_path = "data/app.db";
  r.Path(db, "path", "database.path", base, &cfg->db_path);
  r.Int(db, "seed_rows", "database.seed_rows", 0, 10000000, &cfg->seed_rows);
  r.Int(db, "busy_timeout_ms", "database.busy_timeout_ms", 0, 600000, &cfg->busy_timeout_ms);
  r.Int(db, "check_interval_ms", "database.check_interval_ms", 0, 3600000, &cfg->check_interval_ms);
  r.Int(db, "write_interval_ms", "database.write_interval_ms", 0, 3600000, &cfg->write_interval_ms);

  YAML::Node logs = r.Section(root, "logs", "logs");
  cfg->log_dir = "logs";
  r.Path(logs, "dir", "logs.dir", base, &cfg->log_dir);

  YAML::Node snaps = r.Section(root, "snapshots", "snapshots");
  cfg->snapshot_dir = "snapshots";
  r.Path(snaps, "dir", "snapshots.dir", base, &cfg->snapshot_dir);
  r.Int(snaps, "interval_ms", "snapshots.interval_ms", 0, 86400000, &cfg->snapshot_interval_ms);

  YAML::Node runtime = r.Section(root, "runtime", "runtime");
  cfg->runtime_dir = "run";
  r.Path(runtime, "dir", "runtime.dir", base, &cfg->runtime_dir);

  YAML::Node ports = r.Section(root, "ports", "ports");
  cfg->registry_path = "run/ports.json";
  r.Path(ports, "registry", "ports.registry", base, &cfg->registry_path);
  r.String(ports, "service", "ports.service", &cfg->service);

  ReadChunks(r, r.Section(root, "boot", "boot"), cfg);

  YAML::Node cache = r.Section(root, "cache", "cache");
  r.Int(cache, "warm_mb", "cache.warm_mb", 0, 4096, &cfg->warm_mb);
  r.Int(cache, "low_memory_max_mb", "cache.low_memory_max_mb", 0, 4096, &cfg->low_memory_max_mb);

  YAML::Node features = r.Section(root, "features", "features");
  r.Bool(features, "offline_mode", "features.offline_mode", &cfg->offline_mode);

  YAML::Node up = r.Section(root, "upstreams", "upstreams");
  r.String(up, "primary", "upstreams.primary", &cfg->upstream_primary);
  r.String(up, "backup", "upstreams.backup", &cfg->upstream_backup);
  r.Int(up, "timeout_ms", "upstreams.timeout_ms", 1, 600000, &cfg->upstream_timeout_ms);
  std::string token;
  r.String(up, "token_file", "upstreams.token_file", &token);
  if (!token.empty()) {
    cfg->token_file = token;
    r.Path(up, "token_file", "upstreams.token_file", base, &cfg->token_file);
  }

  YAML::Node model = r.Section(root, "model", "model");
  if (model.IsMap()) {  // absent: no model server, POST /generate answers 503
    // A model section without a URL is a mistake, not "no model server".
    if (!Reader::Get(model, "url")) r.Fail(model, "model.url", "missing");
    r.String(model, "url", "model.url", &cfg->model_url);
    std::string url = cfg->model_url;
    // The app appends /api/generate; a trailing slash would make it //api/generate.
    while (!url.empty() && url.back() == '/') url.pop_back();
    auto with_host = [&](const std::string& scheme) {
      return url.rfind(scheme, 0) == 0 && url.size() > scheme.size();
    };
    if (!with_host("http://") && !with_host("https://")) {
      r.Fail(model["url"], "model.url",
             "expected an http:// or https:// URL, got \"" + cfg->model_url + "\"");
    }
    cfg->model_url = url;
    r.String(model, "name", "model.name", &cfg->model_name);
    r.Int(model, "timeout_ms", "model.timeout_ms", 1, 600000, &cfg->model_timeout_ms);
  }
}

}  // namespace

bool LoadConfig(const std::string& path, AppConfig* out, std::string* error) {
  AppConfig cfg;
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec).lexically_normal();
  cfg.path = abs.string();
  cfg.dir = abs.parent_path().string();
  Reader reader(cfg.path);
  try {
    YAML::Node root = YAML::LoadFile(cfg.path);
    ReadAll(reader, root, &cfg);
  } catch (const ConfigError& e) {
    *error = e.what();
    return false;
  } catch (const YAML::BadFile&) {
    *error = cfg.path + ": cannot read the file";
    return false;
  } catch (const YAML::Exception& e) {
    // Parser errors: yaml-cpp's mark gives the position, `msg` the problem alone.
    *error = cfg.path;
    if (!e.mark.is_null()) {
      *error += ": line " + std::to_string(e.mark.line + 1) + ", column " +
                std::to_string(e.mark.column + 1);
    }
    *error += ": " + e.msg;
    return false;
  }
  *out = std::move(cfg);
  return true;
}

}  // namespace demoapp
