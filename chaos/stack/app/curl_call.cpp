#include "chaos/stack/app/curl_call.h"

#include <chrono>

namespace demoapp {
namespace {

constexpr size_t kMaxAnswer = 1 << 20;

size_t Append(char* data, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (s->size() + size * n > kMaxAnswer) return 0;  // an answer this large is an error
  s->append(data, size * n);
  return size * n;
}

}  // namespace

CurlAnswer CurlCall(const std::string& url, const std::vector<std::string>& headers,
                    const std::string* post_body, int64_t timeout_ms) {
  CurlAnswer a;
  char errbuf[CURL_ERROR_SIZE] = "";
  CURL* c = curl_easy_init();
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
  if (list) curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  if (post_body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, post_body->data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(post_body->size()));
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &a.body);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  auto start = std::chrono::steady_clock::now();
  a.rc = curl_easy_perform(c);
  a.ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
             .count();
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.code);
  curl_slist_free_all(list);
  curl_easy_cleanup(c);
  if (a.rc != CURLE_OK) a.error = errbuf[0] ? errbuf : curl_easy_strerror(a.rc);
  return a;
}

}  // namespace demoapp
