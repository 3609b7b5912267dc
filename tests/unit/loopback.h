#pragma once
// ListenOnLoopback: a TCP socket listening on a free port of 127.0.0.1, for tests that need a
// real server or a real listener.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace guardian {

// The listening fd; `*port` says which port it got.
inline int ListenOnLoopback(int* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(fd, 8) == 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

}  // namespace guardian
