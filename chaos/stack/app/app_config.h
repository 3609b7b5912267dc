#pragma once
// The demo app's YAML config: every key with its default, relative paths made absolute.

#include <cstdint>
#include <string>
#include <vector>

namespace demoapp {

struct ChunkConfig {
  std::string name;
  bool critical = false;
  int64_t ms = 0;  // simulated work: an extra sleep inside the chunk
};

struct AppConfig {
  std::string path;  // the config file, absolute
  std::string dir;   // its folder: relative paths below resolve against it

  int port = 8080;
  std::string host = "127.0.0.1";
  int workers = 4;

  std::string db_path;  // absolute
  int64_t seed_rows = 100;
  int64_t busy_timeout_ms = 200;
  int64_t check_interval_ms = 250;
  int64_t write_interval_ms = 1000;

  std::string log_dir;
  std::string snapshot_dir;
  int64_t snapshot_interval_ms = 0;
  std::string runtime_dir;
  std::string registry_path;
  std::string service = "app";

  std::vector<ChunkConfig> chunks;
  int64_t warm_mb = 16;
  int64_t low_memory_max_mb = 1;
  bool offline_mode = false;

  // upstreams: the quote API (primary and backup base URLs), its timeout and the token file.
  std::string upstream_primary;
  std::string upstream_backup;
  int64_t upstream_timeout_ms = 30000;
  std::string token_file;  // absolute; empty: calls carry no token

  // model: the model server (an Ollama API) for POST /generate; empty url: none configured.
  std::string model_url;  // without a trailing slash
  std::string model_name = "llama3.2:1b";
  int64_t model_timeout_ms = 10000;
};

// The chunk names the app knows, in their default order.
const std::vector<ChunkConfig>& DefaultChunks();

// Loads and validates `path`. On failure returns false with `error` naming the file, the line
// and column (when known) and the field.
bool LoadConfig(const std::string& path, AppConfig* out, std::string* error);

}  // namespace demoapp
