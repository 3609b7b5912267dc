#pragma once
// ApiClient: the CLI's side of the operator API, over the daemon's Unix socket (or a TCP URL)
// with libcurl. Blocking on purpose: the CLI does one request and exits.

#include <nlohmann/json.hpp>
#include <string>

#include "daemon/status.h"

namespace guardian {

struct ApiReply {
  long status = 0;      // HTTP status
  std::string body;     // raw
  nlohmann::json json;  // parsed body, or discarded when not JSON
  // The API's error message for a non-2xx reply, else empty.
  std::string ErrorMessage() const;
};

class ApiClient {
 public:
  // `socket_path` non-empty: talk over that Unix socket; else `base_url` ("http://HOST:PORT").
  ApiClient(std::string socket_path, std::string base_url, long timeout_ms = 60'000);
  // IOError when nothing answers (no daemon); Timeout when the daemon took longer than
  // timeout_ms; the reply otherwise, whatever its status.
  Status Call(const std::string& method, const std::string& path, const nlohmann::json& body,
              ApiReply* reply) const;
  // Where requests go, for messages.
  std::string Where() const;

 private:
  std::string socket_path_;
  std::string base_url_;
  long timeout_ms_;
};

}  // namespace guardian
