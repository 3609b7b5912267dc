// guardian.disk on real files in the check's folder: usage, listing, gzip in place, moves, and
// the path policy (nothing outside the declared folders, no following of a planted symlink).
#include <doctest/doctest.h>

#include <fstream>

#include "tests/lua/run_fixture.h"

namespace guardian {

TEST_CASE("guardian.disk: usage, files oldest first, gzip and move within the check's folders") {
  RunFixture f;
  namespace fs = std::filesystem;
  fs::create_directories(f.app + "/logs");
  std::string text;
  for (int i = 0; i < 5000; ++i) text += "line " + std::to_string(i % 3) + " of the old log\n";
  std::ofstream(f.app + "/logs/app.log.1") << text;
  std::ofstream(f.app + "/logs/app.log") << "current\n";
  fs::last_write_time(f.app + "/logs/app.log.1",
                      fs::file_time_type::clock::now() - std::chrono::hours(2));
  auto run = f.Run(f.Playbook(R"(remediate = function(ctx)
    local dir = ctx.params.path:match("^(.*)/") .. "/logs"
    local u = assert(guardian.disk.usage(dir))
    assert(u.total_bytes > 0 and u.free_percent <= 100)
    local files = assert(guardian.disk.files(dir))
    local first = files[1].name .. ":" .. files[1].size
    local z = assert(guardian.disk.gzip(files[1].path))
    assert(guardian.disk.move(dir .. "/app.log", ctx.state_dir .. "/app.log.kept"))
    return first .. " " .. tostring(z.bytes_after < z.bytes_before / 10) .. " " ..
      #assert(guardian.disk.files(dir))
  end)"));
  auto [s, msg] = f.Phase(*run, "remediate");
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(msg == "app.log.1:" + std::to_string(text.size()) + " true 1");
  CHECK(fs::exists(f.app + "/logs/app.log.1.gz"));
  CHECK(fs::exists(f.state + "/app.log.kept"));
}

TEST_CASE("guardian.disk refuses paths outside the declared folders and planted symlinks") {
  RunFixture f;
  namespace fs = std::filesystem;
  fs::create_symlink("/etc/hostname", f.app + "/planted");
  auto run = f.Run(f.Playbook(R"(remediate = function(ctx)
    guardian.disk.gzip("/etc/hostname")
  end,
  verify = function(ctx)
    local r, err = guardian.disk.gzip(ctx.params.path:match("^(.*)/") .. "/planted")
    return tostring(r) .. " " .. err
  end)"));
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("guardian.disk:") != std::string::npos);
  auto [v, vmsg] = f.Phase(*run, "verify");
  REQUIRE_MESSAGE(v.ok(), v.message());
  CHECK(vmsg.find("nil ") == 0);  // a symlink is not a regular file: refused, nothing written
  CHECK(fs::exists("/etc/hostname"));
  CHECK(!fs::exists(f.app + "/planted.gz"));
}

TEST_CASE("guardian.disk.files and usage follow a final link: inside the roots only") {
  RunFixture f;
  namespace fs = std::filesystem;
  fs::create_directories(f.app + "/logs");
  std::ofstream(f.app + "/logs/app.log") << "current\n";
  fs::create_symlink("logs", f.app + "/logs-link");
  fs::create_symlink("/etc", f.app + "/etc-link");
  auto run = f.Run(f.Playbook(R"(remediate = function(ctx)
    local dir = ctx.params.path:match("^(.*)/")
    local files = assert(guardian.disk.files(dir .. "/logs-link"))
    assert(guardian.disk.usage(dir .. "/logs-link"))
    return files[1].name .. " " .. files[1].path
  end,
  verify = function(ctx)
    guardian.disk.files(ctx.params.path:match("^(.*)/") .. "/etc-link")
  end,
  rollback = function(ctx)
    guardian.disk.usage(ctx.params.path:match("^(.*)/") .. "/etc-link")
  end)"));
  auto [s, msg] = f.Phase(*run, "remediate");
  REQUIRE_MESSAGE(s.ok(), s.message());
  CHECK(msg == "app.log " + fs::canonical(f.app).string() + "/logs/app.log");
  for (const char* phase : {"verify", "rollback"}) {
    auto [v, vmsg] = f.Phase(*run, phase);
    CHECK_FALSE(v.ok());
    CHECK_MESSAGE(vmsg.find("is outside what check") != std::string::npos, vmsg);
  }
}

}  // namespace guardian
