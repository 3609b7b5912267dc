#pragma once
// RunFixture: what the Lua tests that drive PlaybookRun share. A temp dir with app/ (the
// watched file's folder, writable by the playbook) and state/ (ctx.state_dir), a real libuv
// loop, and runs whose services record values, log lines and probes in the fixture.

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon/supervisor.h"
#include "plugins/playbook_run.h"

namespace guardian {

struct RunFixture {
  std::filesystem::path dir;
  std::string app;    // the watched file's folder
  std::string state;  // ctx.state_dir
  uv_loop_t loop{};
  std::map<std::string, std::string> values;
  std::string evidence;  // ctx.evidence of the runs made
  std::vector<std::string> logs;
  int probes = 0;
  int pass_from = 0;  // > 0: the probe passes from this call on
  // For guardian.service tests: the supervisor runs get, and the check's params.service.
  Supervisor* supervisor = nullptr;
  std::string service;
  // For guardian.http tests: the client runs use, and params the check declares.
  HttpClient* http = nullptr;
  Params extra_params;

  RunFixture() {
    char tmpl[] = "/tmp/guardian-run-test-XXXXXX";
    dir = mkdtemp(tmpl);
    app = (dir / "app").string();
    state = (dir / "state").string();
    std::filesystem::create_directories(app);
    std::filesystem::create_directories(state);
    uv_loop_init(&loop);
  }
  ~RunFixture() {
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);  // every handle a run opened is closed
    std::filesystem::remove_all(dir);
  }

  // A playbook `name` with the fields in `body`; `prelude` comes before its `return {`.
  std::shared_ptr<const PlaybookInfo> Playbook(const std::string& body,
                                               const std::string& name = "t",
                                               const std::string& prelude = "") {
    std::filesystem::path p = dir / (name + ".lua");
    std::ofstream(p) << prelude << "return { name = '" << name
                     << "', mode = 'missing_config', timeout = 2000,\n"
                     << body << "\n}\n";
    auto info = std::make_shared<PlaybookInfo>();
    Status s = PlaybookLibrary::Inspect(p.string(), PlaybookLimits{}, info.get());
    REQUIRE_MESSAGE(s.ok(), s.message());
    return info;
  }

  // A started run of `pb` for check "app" watching app/app.yaml; the probe fails (until
  // `pass_from`).
  std::unique_ptr<PlaybookRun> Run(std::shared_ptr<const PlaybookInfo> pb,
                                   PlaybookLimits limits = {}, bool dry_run = false) {
    CheckConfig c{};
    c.id = "app";
    c.mode = "missing_config";
    c.params["path"] = app + "/app.yaml";
    if (!service.empty()) c.params["service"] = service;
    for (const auto& [k, v] : extra_params) c.params[k] = v;
    RunServices services;
    services.supervisor = supervisor;
    services.http = http;
    services.probe = [this](std::function<void(Observation)> done) {
      ++probes;
      if (pass_from > 0 && probes >= pass_from) return done(Observation::Ok("fixed"));
      done(Observation::Failing("still broken"));
    };
    services.get_value = [this](const std::string& k) { return values[k]; };
    services.set_value = [this](const std::string& k, const std::string& v) {
      values[k] = v;
      return Status::OK();
    };
    services.log = [this](const std::string& level, const std::string& line) {
      logs.push_back(level + ": " + line);
    };
    services.dry_run = dry_run;
    auto run = std::make_unique<PlaybookRun>(&loop, pb, c, state, limits, services);
    Status s = run->Start(7, evidence);
    REQUIRE_MESSAGE(s.ok(), s.message());
    return run;
  }

  // Runs one phase to completion on the loop.
  std::pair<Status, std::string> Phase(PlaybookRun& run, const std::string& phase) {
    bool done = false;
    Status result;
    std::string message;
    run.RunPhase(phase, 1, [&](Status s, std::string m) {
      done = true;
      result = s;
      message = m;
    });
    while (!done && uv_run(&loop, UV_RUN_ONCE)) {
    }
    REQUIRE(done);
    return {result, message};
  }
};

}  // namespace guardian
