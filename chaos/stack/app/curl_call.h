#pragma once
// One blocking HTTP request with libcurl's easy interface, for the app's worker threads (the
// upstream quote API and the model server). curl_global_init is done once at start by
// UpstreamGlobalInit.

#include <curl/curl.h>

#include <cstdint>
#include <string>
#include <vector>

namespace demoapp {

struct CurlAnswer {
  CURLcode rc = CURLE_OK;
  long code = 0;      // HTTP status, 0 without an answer
  std::string body;   // at most 1 MiB; a longer answer fails with rc CURLE_WRITE_ERROR
  int64_t ms = 0;     // the whole request
  std::string error;  // when rc is not CURLE_OK: curl's error buffer (host, port, time spent)
};

// GET `url`, or POST `post_body` when it is not null.
CurlAnswer CurlCall(const std::string& url, const std::vector<std::string>& headers,
                    const std::string* post_body, int64_t timeout_ms);

}  // namespace demoapp
