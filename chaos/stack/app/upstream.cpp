// Calls to the upstream API with libcurl's easy interface, from the HTTP worker threads.

#include "chaos/stack/app/upstream.h"

#include <curl/curl.h>

#include <fstream>
#include <sstream>

#include "chaos/stack/app/curl_call.h"
#include "chaos/stack/app/flags.h"
#include "chaos/stack/app/status.h"

namespace demoapp {
namespace {

// The token in the token file, re-read on each call (it is replaced when refreshed).
std::string ReadToken(const std::string& path) {
  if (path.empty()) return "";
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json doc = nlohmann::json::parse(ss.str(), nullptr, false);
  if (!doc.is_object() || !doc.contains("access_token") || !doc["access_token"].is_string())
    return "";
  return doc["access_token"].get<std::string>();
}

}  // namespace

void UpstreamGlobalInit() { curl_global_init(CURL_GLOBAL_DEFAULT); }

Upstreams::Upstreams(UpstreamConfig config, Status& status)
    : config_(std::move(config)), status_(status) {}

bool Upstreams::configured() const { return !Config().primary.empty(); }

void Upstreams::Reconfigure(UpstreamConfig config) {
  std::lock_guard lock(mu_);
  config_ = std::move(config);
}

UpstreamConfig Upstreams::Config() const {
  std::lock_guard lock(mu_);
  return config_;
}

UpstreamReply Upstreams::Quote(int64_t item, const Flags& flags) {
  const UpstreamConfig cfg = Config();  // one config for the whole call
  std::string name = flags.active_upstream == "backup" ? "backup" : "primary";
  std::string base = name == "backup" ? cfg.backup : cfg.primary;
  int64_t timeout = flags.upstream_timeout_ms > 0 ? flags.upstream_timeout_ms : cfg.timeout_ms;
  if (base.empty()) {
    return {503, {{"error", "no " + name + " upstream configured"}}};
  }
  std::string url = base + "/v1/quote?item=" + std::to_string(item);
  std::string token = ReadToken(cfg.token_file);
  std::vector<std::string> headers;
  if (!token.empty()) headers.push_back("Authorization: Bearer " + token);
  CurlAnswer a = CurlCall(url, headers, nullptr, timeout);
  const CURLcode rc = a.rc;
  const long code = a.code;
  const int64_t ms = a.ms;
  const std::string& body = a.body;

  if (rc != CURLE_OK) {
    std::string kind = rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "unreachable";
    status_.UpstreamCall(name, timeout, false, ms, kind, a.error);
    return {rc == CURLE_OPERATION_TIMEDOUT ? 504u : 502u,
            {{"error", name + " upstream: " + a.error}, {"upstream", name}}};
  }
  if (code == 401 || code == 403) {
    // Not the upstream's fault: the app's credentials were refused.
    status_.UpstreamCall(name, timeout, true, ms, "", "");
    status_.AuthRefused(static_cast<int>(code));
    return {
        502,
        {{"error", name + " upstream refused the app's credentials (" + std::to_string(code) + ")"},
         {"upstream", name}}};
  }
  if (code != 200) {
    status_.UpstreamCall(name, timeout, false, ms, "status " + std::to_string(code), body);
    return {502,
            {{"error", name + " upstream answered " + std::to_string(code)}, {"upstream", name}}};
  }
  nlohmann::json doc = nlohmann::json::parse(body, nullptr, false);
  if (!doc.is_object()) {
    status_.UpstreamCall(name, timeout, false, ms, "bad answer", "not a JSON object");
    return {502, {{"error", name + " upstream answered something that is not JSON"}}};
  }
  status_.UpstreamCall(name, timeout, true, ms, "", "");
  status_.AuthAccepted();
  doc["upstream"] = name;
  return {200, doc};
}

}  // namespace demoapp
