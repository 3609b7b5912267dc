#pragma once
// The upstream API the app calls for quotes: a primary and a backup (which one is the flags'
// active_upstream), each request with a bearer token read from a token file that something
// else keeps fresh (Guardian's invalid_credentials playbook, or an operator), and a timeout the
// flags can lower. What each call did is reported in status.json ("upstreams", "auth"), so a
// watchdog sees failures the app meets. The app never retries by itself: a failed call is an
// error answer, counted.

#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

namespace demoapp {

class Status;
struct Flags;

struct UpstreamConfig {
  std::string primary;  // base URLs, e.g. http://127.0.0.1:9101
  std::string backup;
  int64_t timeout_ms = 30000;  // unless the flags' upstream_timeout_ms is set
  std::string token_file;      // JSON {"access_token": "..."}; empty: no Authorization header
};

struct UpstreamReply {
  unsigned http_status = 200;  // what the app answers its own client
  nlohmann::json body;
};

class Upstreams {
 public:
  Upstreams(UpstreamConfig config, Status& status);
  bool configured() const;
  // A reloaded config's upstreams, used from the next call on.
  void Reconfigure(UpstreamConfig config);
  // GET <active>/v1/quote?item=N with the current token.
  UpstreamReply Quote(int64_t item, const Flags& flags);

 private:
  UpstreamConfig Config() const;
  mutable std::mutex mu_;
  UpstreamConfig config_;
  Status& status_;
};

// Called once at start, before any thread (libcurl's global state).
void UpstreamGlobalInit();

}  // namespace demoapp
