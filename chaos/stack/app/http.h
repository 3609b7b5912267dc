#pragma once
// The HTTP endpoints (libmicrohttpd, a thread pool on a socket the listen chunk bound).

#include <microhttpd.h>

#include <string>

namespace demoapp {

struct App;

class HttpServer {
 public:
  explicit HttpServer(App& app) : app_(app) {}
  ~HttpServer() { Stop(); }

  // Serves on `listen_fd` (MHD takes it over) with `workers` threads.
  bool Start(int listen_fd, int workers, std::string* error);
  void Stop();

 private:
  App& app_;
  MHD_Daemon* daemon_ = nullptr;
};

}  // namespace demoapp
