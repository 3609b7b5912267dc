// guardian.http from a playbook against a real HTTP server on loopback: only the endpoints the
// check declares in its params, answers and transport failures as tables, and a phase that
// ends cancels its request.
#include <doctest/doctest.h>

#include "daemon/http_client.h"
#include "tests/lua/run_fixture.h"
#include "tests/unit/test_http_server.h"

namespace guardian {

TEST_CASE("guardian.http reaches declared endpoints and reports what came back") {
  TestHttpServer srv;
  RunFixture f;
  HttpClient client(&f.loop);
  f.http = &client;
  f.extra_params["primary"] = srv.Url("");
  auto run = f.Run(f.Playbook(R"(remediate = function(ctx)
    local ok = guardian.http.get(ctx.params.primary .. "/hello")
    local missing = guardian.http.get(ctx.params.primary .. "/missing")
    local auth = guardian.http.get(ctx.params.primary .. "/auth", {headers = {"Authorization: Bearer t0k"}})
    local hung = guardian.http.get(ctx.params.primary .. "/hang", {timeout_ms = 150})
    local posted = guardian.http.post(ctx.params.primary .. "/token", "x=1")
    local j = guardian.http.get(ctx.params.primary .. "/json")
    return ok.status .. " " .. ok.body .. "|" .. missing.status .. "|" .. auth.status .. "|" ..
      tostring(hung.ok) .. " " .. hung.error_kind .. "|" .. posted.body .. "|" ..
      j.json.models[1].name .. " " .. tostring(j.json.gone) .. " " .. tostring(ok.json)
  end)"));
  auto [s, msg] = f.Phase(*run, "remediate");
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(msg == "200 GET /hello|404|200|false timeout|POST /token|a:1b nil nil");
  g_release = true;
  run.reset();
  client.Close([] {});
}

TEST_CASE("guardian.http refuses anything the check does not declare") {
  TestHttpServer srv;
  RunFixture f;
  HttpClient client(&f.loop);
  f.http = &client;
  f.extra_params["primary"] = srv.Url("/api");
  auto run = f.Run(f.Playbook(R"(remediate = function(ctx)
    guardian.http.get(ctx.params.primary .. "x/hello")
  end,
  verify = function(ctx)
    guardian.http.get("http://169.254.169.254/latest/meta-data/")
  end)"));
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("is not an endpoint this check declares") != std::string::npos);
  auto [v, vmsg] = f.Phase(*run, "verify");
  CHECK_FALSE(v.ok());
  run.reset();
  client.Close([] {});
}

}  // namespace guardian
