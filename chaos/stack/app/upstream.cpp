// Calls to the upstream API with libcurl's easy interface, from the HTTP worker threads.

#include "chaos/stack/app/upstream.h"

#include <curl/curl.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "chaos/stack/app/flags.h"
#include "chaos/stack/app/status.h"

namespace demoapp {
namespace {

size_t Append(char* data, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (s->size() + size * n > (1 << 20)) return 0;  // an answer this large is an error
  s->append(data, size * n);
  return size * n;
}

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
  std::string body;
  CURL* c = curl_easy_init();
  curl_slist* headers = nullptr;
  if (!token.empty())
    headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  auto start = std::chrono::steady_clock::now();
  CURLcode rc = curl_easy_perform(c);
  int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - start)
                   .count();
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);

  if (rc != CURLE_OK) {
    std::string kind = rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "unreachable";
    status_.UpstreamCall(name, timeout, false, ms, kind, curl_easy_strerror(rc));
    return {rc == CURLE_OPERATION_TIMEDOUT ? 504u : 502u,
            {{"error", name + " upstream: " + curl_easy_strerror(rc)}, {"upstream", name}}};
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
