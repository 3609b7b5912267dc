#pragma once
// EtcdProcess: a real single-member etcd (Debian's etcd-server) on free loopback ports, for
// tests of what talks to it. Stopped with SIGKILL (or Stop()) and its data removed after.

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/temp_dir.h"

extern char** environ;

namespace guardian {

// A port nothing listens on now (bound to 0, read back, closed).
inline int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t n = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline bool Accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::close(fd);
  return ok;
}

struct EtcdProcess {
  TempDir dir{"guardian-etcd"};
  int client_port = FreeLoopbackPort();
  int peer_port = FreeLoopbackPort();
  pid_t pid = -1;

  EtcdProcess() { Start(); }
  // Starts it (again, on the same ports and data after Stop()).
  void Start() {
    std::string client = "http://127.0.0.1:" + std::to_string(client_port);
    std::string peer = "http://127.0.0.1:" + std::to_string(peer_port);
    std::vector<std::string> args = {"/usr/bin/etcd",
                                     "--logger=zap",
                                     "--name=t",
                                     "--data-dir=" + (dir.path / "data").string(),
                                     "--listen-client-urls=" + client,
                                     "--advertise-client-urls=" + client,
                                     "--listen-peer-urls=" + peer,
                                     "--initial-advertise-peer-urls=" + peer,
                                     "--initial-cluster=t=" + peer,
                                     "--log-outputs=" + (dir.path / "etcd.log").string()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    REQUIRE_MESSAGE(::access("/usr/bin/etcd", X_OK) == 0,
                    "etcd is not installed (scripts/setup installs etcd-server)");
    REQUIRE(::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) == 0);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!Accepts(client_port)) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        std::ifstream log(dir.path / "etcd.log");
        std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
        FAIL("etcd exited at start: " << text.substr(text.size() > 800 ? text.size() - 800 : 0));
      }
      REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "etcd did not start");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~EtcdProcess() { Stop(); }
  void Stop() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(client_port); }
};

}  // namespace guardian
