#pragma once
// TestHttpServer: a real HTTP server on loopback for tests of HTTP clients (libmicrohttpd, a
// thread per connection). Paths: /hang (answers only once released, or after 3 s), /big (64 KiB),
// /missing (404), /auth (200 with "Authorization: Bearer t0k", else 401), /json (a JSON object);
// anything else answers 200 "METHOD PATH".

#include <doctest/doctest.h>
#include <microhttpd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

namespace guardian {

inline std::atomic<bool> g_release{false};

inline MHD_Result Handle(void*, MHD_Connection* c, const char* url, const char* method, const char*,
                         const char*, size_t* upload_size, void** state) {
  if (*state == nullptr) {  // the first call is for the headers only
    static int marker;
    *state = &marker;
    return MHD_YES;
  }
  if (*upload_size > 0) {
    *upload_size = 0;
    return MHD_YES;
  }
  std::string path = url;
  std::string body = std::string(method) + " " + path;
  unsigned code = MHD_HTTP_OK;
  if (path == "/hang") {
    // Until the test lets go (or 3 s), as a server that accepts and never answers.
    for (int i = 0; i < 300 && !g_release; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  } else if (path == "/big") {
    body.assign(64 << 10, 'x');
  } else if (path == "/missing") {
    code = MHD_HTTP_NOT_FOUND;
  } else if (path == "/json") {
    body = R"({"models": [{"name": "a:1b"}], "gone": null})";
  } else if (path == "/auth") {
    const char* h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    code = h && std::string(h) == "Bearer t0k" ? MHD_HTTP_OK : MHD_HTTP_UNAUTHORIZED;
  }
  MHD_Response* r =
      MHD_create_response_from_buffer(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
  MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

struct TestHttpServer {
  MHD_Daemon* d = nullptr;
  int port = 0;
  TestHttpServer() {
    g_release = false;
    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                         nullptr, nullptr, &Handle, nullptr, MHD_OPTION_END);
    REQUIRE(d != nullptr);
    port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
  }
  ~TestHttpServer() {
    g_release = true;
    MHD_stop_daemon(d);
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
};

}  // namespace guardian
