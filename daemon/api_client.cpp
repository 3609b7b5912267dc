#include "daemon/api_client.h"

#include <curl/curl.h>

namespace guardian {

std::string ApiReply::ErrorMessage() const {
  if (status >= 200 && status < 300) return {};
  if (json.is_object() && json.contains("error") && json["error"].is_object()) {
    return json["error"].value("message", "HTTP " + std::to_string(status));
  }
  return "HTTP " + std::to_string(status) + (body.empty() ? "" : ": " + body);
}

ApiClient::ApiClient(std::string socket_path, std::string base_url, long timeout_ms)
    : socket_path_(std::move(socket_path)),
      base_url_(std::move(base_url)),
      timeout_ms_(timeout_ms) {}

std::string ApiClient::Where() const { return socket_path_.empty() ? base_url_ : socket_path_; }

Status ApiClient::Call(const std::string& method, const std::string& path,
                       const nlohmann::json& body, ApiReply* reply) const {
  static const bool initialized = curl_global_init(CURL_GLOBAL_DEFAULT) == 0;
  if (!initialized) return Status::IOError("libcurl failed to initialize");
  CURL* curl = curl_easy_init();
  if (!curl) return Status::IOError("libcurl: cannot create a handle");
  // Over a Unix socket the host part is only for the Host header.
  std::string url = (socket_path_.empty() ? base_url_ : "http://localhost") + path;
  std::string payload = body.is_null() ? "" : body.dump();
  std::string out;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  if (!socket_path_.empty()) curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, socket_path_.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms_);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  if (method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
  }
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char* p, size_t size, size_t n, void* ud) -> size_t {
        static_cast<std::string*>(ud)->append(p, size * n);
        return size * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out);
  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc == CURLE_OPERATION_TIMEDOUT && status == 0) {
    // It connected (or tried long enough): the daemon is there but did not answer in time.
    return Status::Timeout("no answer within " + std::to_string(timeout_ms_ / 1000) + " s (" +
                           Where() + ")");
  }
  if (rc != CURLE_OK) {
    return Status::IOError(std::string(curl_easy_strerror(rc)) + " (" + Where() + ")");
  }
  reply->status = status;
  reply->body = std::move(out);
  reply->json = nlohmann::json::parse(reply->body, nullptr, false);
  return Status::OK();
}

}  // namespace guardian
