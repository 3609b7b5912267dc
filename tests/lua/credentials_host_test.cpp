// guardian.credentials from a playbook: what it tells about the token and the keys (never the
// token or a secret), the authenticated probe against a real HTTP server on loopback, and a
// refusal from checks that declare no credentials.
#include <doctest/doctest.h>

#include <fstream>

#include "daemon/http_client.h"
#include "tests/lua/run_fixture.h"
#include "tests/unit/test_http_server.h"

namespace guardian {

TEST_CASE("guardian.credentials describes the token and keys without their secrets") {
  TestHttpServer srv;
  RunFixture f;
  HttpClient client(&f.loop);
  f.http = &client;
  std::string token = f.app + "/token.json", k1 = f.app + "/k1.json", k2 = f.app + "/k2.json";
  std::ofstream(token) << R"({"access_token": "t0k", "refresh_token": "r3fresh",
                              "client_id": "app", "expires_at": 4102444800000})";
  std::ofstream(k1) << R"({"client_id": "app", "client_secret": "s3cret-one"})";
  std::ofstream(k2) << R"({"client_id": "app-backup"})";
  f.extra_params["token_file"] = token;
  f.extra_params["token_url"] = srv.Url("/oauth/token");
  f.extra_params["probe_url"] = srv.Url("/auth");
  f.extra_params["key_files"] = std::vector<std::string>{k1, k2};
  auto run = f.Run(f.Playbook(R"(remediate = function(ctx)
    local function dump(t)
      local out = {}
      for k, v in pairs(t) do out[#out + 1] = k .. "=" .. tostring(v) end
      table.sort(out)
      return table.concat(out, ",")
    end
    local t = guardian.credentials.token()
    local keys = guardian.credentials.keys()
    local p = guardian.credentials.probe()
    return dump(t):gsub("expires_in_ms=%d+", "expires_in_ms=N") .. "|" .. dump(keys[1]) .. "|" ..
      dump(keys[2]) .. "|" .. p.status
  end)"));
  auto [s, msg] = f.Phase(*run, "remediate");
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(msg.find("client_id=app,expires_at=4102444800000,expires_in_ms=N,has_refresh=true,"
                 "present=true|client_id=app,file=") == 0);
  CHECK(msg.find("problem=") != std::string::npos);  // key 2 has no secret
  CHECK(msg.find("'client_secret' is missing") != std::string::npos);
  CHECK(msg.substr(msg.size() - 4) == "|200");  // the token was sent as the bearer
  for (const char* secret : {"t0k", "r3fresh", "s3cret-one"})
    CHECK_MESSAGE(msg.find(secret) == std::string::npos, secret);
  run.reset();
  client.Close([] {});
}

TEST_CASE("guardian.credentials refuses a check that declares no credentials") {
  RunFixture f;
  auto run = f.Run(f.Playbook(R"(remediate = function(ctx)
    guardian.credentials.token()
  end)"));
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("declares no token_file, token_url, probe_url and key_files") !=
        std::string::npos);
}

}  // namespace guardian
