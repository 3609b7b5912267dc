#pragma once
// The model server the app asks for generations: an Ollama HTTP API (or its stand-in,
// chaos/stack/upstream model). Each call is a non-streaming POST /api/generate with the
// config's model and timeout; what it did is reported in status.json ("model"), so a watchdog
// sees a dead, failing or hung model server. As with the upstreams, the app never retries.

#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

namespace demoapp {

class Status;

struct ModelConfig {
  std::string url;  // API base URL, e.g. http://127.0.0.1:11434; empty: no model server
  std::string name = "llama3.2:1b";
  int64_t timeout_ms = 10000;
};

struct ModelReply {
  unsigned http_status = 200;  // what the app answers its own client
  nlohmann::json body;
};

class ModelClient {
 public:
  ModelClient(ModelConfig config, Status& status);
  bool configured() const;
  // A reloaded config's model section, used from the next call on.
  void Reconfigure(ModelConfig config);
  // POST <url>/api/generate {"model", "prompt", "stream": false}.
  ModelReply Generate(const std::string& prompt);

 private:
  ModelConfig Config() const;
  mutable std::mutex mu_;
  ModelConfig config_;
  Status& status_;
};

}  // namespace demoapp
