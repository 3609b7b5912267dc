// How missing_config judges a YAML config text: empty, unparsable, not a mapping, a required key
// missing, or a key of the wrong type ("server.port:int").
#include "daemon/yaml_check.h"

#include <doctest/doctest.h>

namespace guardian {

TEST_CASE("a config with its required keys passes; each kind of damage is named") {
  std::string good = "server:\n  port: 8080\n  host: x\ndatabase:\n  path: a.db\n";
  CHECK(CheckYamlText(good, {"server.port", "database.path"}).ok());
  CHECK(CheckYamlText("  \n", {}).message() == "file is empty");
  CHECK(CheckYamlText("server: [1,\n", {}).message().find("YAML error at line") == 0);
  CHECK(CheckYamlText("- a\n- b\n", {}).message() == "top level is not a mapping");
  CHECK(CheckYamlText("server:\n  host: x\n", {"server.port"}).message() ==
        "required key 'server.port' is missing");
}

TEST_CASE("typed keys: int, number, bool, string, list, map") {
  std::string text =
      "server:\n  port: 8080\n  ratio: 0.5\n  tls: false\n  host: x\n  names: [a]\n  opts: {a: "
      "1}\n";
  CHECK(CheckYamlText(text,
                      {"server.port:int", "server.ratio:number", "server.tls:bool",
                       "server.host:string", "server.names:list", "server.opts:map", "server:map"})
            .ok());
  CHECK(CheckYamlText("server:\n  port: eighty\n", {"server.port:int"}).message() ==
        "key 'server.port' must be an integer, got 'eighty'");
  CHECK(CheckYamlText("server:\n  port: [1]\n", {"server.port:int"}).message() ==
        "key 'server.port' must be an integer, got a sequence");
  CHECK(CheckYamlText("server:\n  tls: maybe\n", {"server.tls:bool"}).message() ==
        "key 'server.tls' must be true or false, got 'maybe'");
  CHECK(CheckYamlText("server: 3\n", {"server:map"}).message() ==
        "key 'server' must be a mapping, got '3'");
  CHECK(KeyTypeValid("server.port"));
  CHECK(KeyTypeValid("server.port:int"));
  CHECK_FALSE(KeyTypeValid("server.port:integer"));
}

}  // namespace guardian
