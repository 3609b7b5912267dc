#include "daemon/port_survey.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace guardian {
namespace {

PortHolder Holder(pid_t pid, bool ours, bool same_program, const char* exe) {
  PortHolder h;
  h.id.pid = pid;
  h.id.start_ticks = 100;
  h.id.exe = exe;
  h.ours = ours;
  h.same_program = same_program;
  return h;
}

}  // namespace

TEST_CASE("a port held only by the service itself is fine") {
  PortSurvey s;
  s.port = 8080;
  s.holders = {Holder(10, true, false, "/usr/bin/app")};
  Observation o = JudgePort(s, "app", true);
  CHECK(o.ok());
  CHECK(o.evidence == "port 8080 is held by app");
}

TEST_CASE("a foreign holder fails the check and is named, with what it is") {
  PortSurvey s;
  s.port = 8080;
  s.holders = {Holder(42, false, false, "/usr/bin/nc")};
  Observation o = JudgePort(s, "app", false);
  CHECK(o.failing());
  CHECK(o.evidence.find("port 8080 of service app is held by pid 42") != std::string::npos);
  CHECK(o.evidence.find("another program") != std::string::npos);
  // Even while the service runs (e.g. both bound with SO_REUSEPORT): it is not the only holder.
  s.holders.push_back(Holder(10, true, false, "/usr/bin/app"));
  CHECK(JudgePort(s, "app", true).failing());
}

TEST_CASE("a stale instance of the same program is called that") {
  PortSurvey s;
  s.port = 8080;
  s.holders = {Holder(43, false, true, "/usr/bin/app")};
  Observation o = JudgePort(s, "app", false);
  CHECK(o.failing());
  CHECK(o.evidence.find("a stale instance of the service's own program") != std::string::npos);
}

TEST_CASE("a failed bind with a holder we cannot see fails; a free port does not") {
  PortSurvey s;
  s.port = 8080;
  s.bind_error = "EADDRINUSE";
  s.unattributed = 1;
  Observation o = JudgePort(s, "app", false);
  CHECK(o.failing());
  CHECK(o.evidence.find("could not bind port 8080 (EADDRINUSE)") != std::string::npos);
  s.unattributed = 0;  // the holder went away: the next start will bind
  CHECK(JudgePort(s, "app", false).ok());
}

TEST_CASE("SurveyPort finds a real listener and tells ours from others by pid and group") {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::listen(fd, 1) == 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);

  PortSurvey s;
  REQUIRE(SurveyPort(port, ::getpid(), "", "", &s).ok());
  REQUIRE(s.holders.size() == 1);
  CHECK(s.holders[0].id.pid == ::getpid());
  CHECK(s.holders[0].ours);
  CHECK_FALSE(s.foreign_or_stale());

  // Seen from a service that is some other process running this same program: stale.
  ProcessIdentity self;
  REQUIRE(ReadProcessIdentity(::getpid(), &self).ok());
  REQUIRE(SurveyPort(port, 1, self.exe, "", &s).ok());
  CHECK_FALSE(s.holders[0].ours);
  CHECK(s.holders[0].same_program);
  ::close(fd);
}

}  // namespace guardian
