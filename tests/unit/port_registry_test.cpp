#include "daemon/port_registry.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace guardian {

namespace {
ServiceConfig Svc(const std::string& name, int preferred, int lo, int hi) {
  ServiceConfig s;
  s.name = name;
  s.argv = {"/bin/true"};
  s.port_preferred = preferred;
  s.port_lo = lo;
  s.port_hi = hi;
  return s;
}
}  // namespace

TEST_CASE("the registry round-trips through its JSON file shape") {
  PortTable t;
  t["app"] = PortAssignment{8081, 8080, 8080, 8089, 1'700'000'000'000, "8080 held by pid 42"};
  t["db"] = PortAssignment{5432, 5432, 5432, 5432, 0, ""};
  std::string text = SerializePortRegistry(t);
  CHECK(text.find("\"services\"") != std::string::npos);
  PortTable back;
  REQUIRE(ParsePortRegistry(text, &back).ok());
  CHECK(back == t);
  CHECK(back["app"].moved());
  CHECK_FALSE(back["db"].moved());
}

TEST_CASE("a malformed registry is Corruption saying what is wrong") {
  PortTable t;
  CHECK(ParsePortRegistry("not json", &t).code() == Status::Code::kCorruption);
  CHECK(ParsePortRegistry("[]", &t).code() == Status::Code::kCorruption);
  Status s = ParsePortRegistry(R"({"services": {"app": {"port": 70000, "preferred": 8080}}})", &t);
  CHECK(s.code() == Status::Code::kCorruption);
  CHECK(s.message().find("services.app") != std::string::npos);
  CHECK(ParsePortRegistry("{}", &t).ok());
  CHECK(t.empty());
}

TEST_CASE("reconciling keeps a move inside the range and drops what is not configured") {
  PortTable existing;
  existing["app"] = PortAssignment{8083, 8080, 8080, 8089, 5, "conflict"};
  existing["gone"] = PortAssignment{9000, 9000, 9000, 9000, 0, ""};
  std::vector<ServiceConfig> services = {Svc("app", 8080, 8080, 8089), Svc("new", 7000, 7000, 7001),
                                         Svc("portless", 0, 0, 0)};
  PortTable t = ReconcilePorts(existing, services);
  CHECK(t.size() == 2);
  CHECK(t["app"].port == 8083);  // the move survives a guardiand restart
  CHECK(t["app"].reason == "conflict");
  CHECK(t["new"].port == 7000);
  CHECK(t.count("gone") == 0);
  CHECK(t.count("portless") == 0);

  // The operator narrowed the range: the moved port is no longer allowed.
  t = ReconcilePorts(existing, {Svc("app", 8080, 8080, 8081)});
  CHECK(t["app"].port == 8080);
  CHECK(t["app"].reason.empty());
  // Or changed the preferred port: start over from it.
  t = ReconcilePorts(existing, {Svc("app", 8085, 8080, 8089)});
  CHECK(t["app"].port == 8085);
}

TEST_CASE("save is atomic and load reads it back") {
  char tmpl[] = "/tmp/guardian-ports-XXXXXX";
  std::filesystem::path dir = mkdtemp(tmpl);
  std::string path = (dir / "sub" / "ports.json").string();
  PortTable t;
  CHECK(LoadPortRegistry(path, &t).code() == Status::Code::kNotFound);
  t["app"] = PortAssignment{8080, 8080, 8080, 8089, 0, ""};
  REQUIRE(SavePortRegistry(path, t).ok());
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  PortTable back;
  REQUIRE(LoadPortRegistry(path, &back).ok());
  CHECK(back == t);
  std::ofstream(path) << "{broken";
  Status s = LoadPortRegistry(path, &back);
  CHECK(s.code() == Status::Code::kCorruption);
  CHECK(s.message().find(path) != std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace guardian
