// FindPortOwners against real listening sockets on loopback: this process's own, and a child's.
#include "daemon/port_owner.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

using guardian::FindPortOwners;
using guardian::ParseProcNetTcp;
using guardian::ProcessIdentity;
using guardian::Status;

namespace {

// A listening IPv4 loopback socket on a port the kernel picks.
struct Listener {
  int fd = -1;
  int port = 0;
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    REQUIRE(::listen(fd, 4) == 0);
    socklen_t len = sizeof(a);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
  }
  ~Listener() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

TEST_CASE("ParseProcNetTcp keeps listening sockets on the port only") {
  std::string text =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
      "inode\n"
      "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 "
      "111 1 0000000000000000 100 0 0 10 0\n"
      "   1: 0100007F:1F90 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 "
      "222 1 0000000000000000 20 4 30 10 -1\n"
      "   2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 "
      "333 1 0000000000000000 100 0 0 10 0\n"
      "garbage line\n";
  auto s = ParseProcNetTcp(text, 0x1F90, false);
  REQUIRE(s.size() == 1);  // 222 is an established connection, 333 another port
  CHECK(s[0].inode == 111);
  CHECK(s[0].address == "0100007F");
  CHECK(ParseProcNetTcp(text, 0x1F91, false).at(0).inode == 333);
  CHECK(ParseProcNetTcp(text, 80, false).empty());
}

TEST_CASE("FindPortOwners finds this process on its own listening port") {
  Listener l;
  std::vector<ProcessIdentity> owners;
  int unattributed = -1;
  REQUIRE(FindPortOwners(l.port, &owners, &unattributed).ok());
  REQUIRE(owners.size() == 1);
  CHECK(owners[0].pid == ::getpid());
  CHECK(unattributed == 0);
  ::close(l.fd);
  l.fd = -1;
  REQUIRE(FindPortOwners(l.port, &owners).ok());
  CHECK(owners.empty());
  CHECK(FindPortOwners(0, &owners).code() == Status::Code::kInvalidArgument);
}

TEST_CASE("FindPortOwners names a child that holds the socket, with its start time") {
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  int port = 0;
  pid_t child = -1;
  {
    Listener l;
    port = l.port;
    child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // Keeps an inherited copy of the listening socket (CLOEXEC only acts on exec).
      ::close(ready[0]);
      (void)!::write(ready[1], "x", 1);
      ::pause();
      ::_exit(0);
    }
    char c;
    REQUIRE(::read(ready[0], &c, 1) == 1);
  }  // the parent's copy is closed here: only the child holds the socket now
  std::vector<ProcessIdentity> owners;
  REQUIRE(FindPortOwners(port, &owners).ok());
  REQUIRE(owners.size() == 1);
  CHECK(owners[0].pid == child);
  ProcessIdentity direct;
  REQUIRE(guardian::ReadProcessIdentity(child, &direct).ok());
  CHECK(owners[0].SameAs(direct));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  REQUIRE(FindPortOwners(port, &owners).ok());
  CHECK(owners.empty());
}
