// Calls to the model server with libcurl's easy interface, from the HTTP worker threads.
// curl_global_init is done once at start by UpstreamGlobalInit.

#include "chaos/stack/app/model.h"

#include <curl/curl.h>


#include "chaos/stack/app/curl_call.h"
#include "chaos/stack/app/status.h"

namespace demoapp {
namespace {

// Ollama's error answers are {"error": "..."}; anything else is quoted as it came.
std::string ErrorMessage(const std::string& body) {
  nlohmann::json doc = nlohmann::json::parse(body, nullptr, false);
  if (doc.is_object() && doc.contains("error") && doc["error"].is_string())
    return doc["error"].get<std::string>();
  return body;
}

}  // namespace

ModelClient::ModelClient(ModelConfig config, Status& status)
    : config_(std::move(config)), status_(status) {
  status_.SetModelConfig(config_.url, config_.name, config_.timeout_ms);
}

bool ModelClient::configured() const { return !Config().url.empty(); }

void ModelClient::Reconfigure(ModelConfig config) {
  std::lock_guard lock(mu_);
  config_ = std::move(config);
  status_.SetModelConfig(config_.url, config_.name, config_.timeout_ms);
}

ModelConfig ModelClient::Config() const {
  std::lock_guard lock(mu_);
  return config_;
}

ModelReply ModelClient::Generate(const std::string& prompt) {
  const ModelConfig cfg = Config();  // one config for the whole call
  if (cfg.url.empty()) return {503, {{"error", "no model server configured"}}};
  std::string url = cfg.url + "/api/generate";
  std::string request =
      nlohmann::json{{"model", cfg.name}, {"prompt", prompt}, {"stream", false}}.dump(
          -1, ' ', false, nlohmann::json::error_handler_t::replace);
  CurlAnswer a = CurlCall(url, {"Content-Type: application/json", "Expect:"}, &request,
                          cfg.timeout_ms);  // "Expect:": no 100-continue round trip
  const CURLcode rc = a.rc;
  const long code = a.code;
  const int64_t ms = a.ms;
  const std::string& body = a.body;

  const nlohmann::json model = cfg.name;
  auto fail = [&](unsigned http_status, const std::string& kind, const std::string& message,
                  const std::string& error) -> ModelReply {
    status_.ModelCall(false, ms, kind, message);
    return {http_status, {{"error", error}, {"model", model}}};
  };
  if (rc == CURLE_WRITE_ERROR) {
    return fail(502, "bad answer", "answer over 1 MiB", "model server answered over 1 MiB");
  }
  if (rc != CURLE_OK) {
    const std::string& why = a.error;
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      return fail(504, "timeout", why, "model server: " + why);
    }
    return fail(502, "unreachable", why, "model server: " + why);
  }
  if (code != 200) {
    std::string message = ErrorMessage(body);
    return fail(502, "status " + std::to_string(code), message,
                "model server answered " + std::to_string(code) + ": " + message.substr(0, 200));
  }
  nlohmann::json doc = nlohmann::json::parse(body, nullptr, false);
  if (!doc.is_object()) {
    return fail(502, "bad answer", "not a JSON object",
                "model server answered something that is not JSON");
  }
  if (!doc.contains("response") || !doc["response"].is_string() || !doc.contains("done") ||
      doc["done"] != true) {
    return fail(502, "bad answer", "no response string or not done",
                "model server answered without a finished response");
  }
  status_.ModelCall(true, ms, "", "");
  return {200, {{"response", doc["response"]}, {"model", model}, {"ms", ms}}};
}

}  // namespace demoapp
