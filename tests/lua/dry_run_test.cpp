// Dry runs on a real libuv loop with real files: the calls that act are recorded in order under
// their phase and change nothing, reads and the path policy stay real, sleeps do not wait, and
// the same playbook without dry run does act.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "plugins/playbook_run.h"
#include "tests/lua/run_fixture.h"

using namespace guardian;
namespace fs = std::filesystem;

namespace {

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The playbooks here name the watched file's folder APP.
struct Fixture : RunFixture {
  std::shared_ptr<const PlaybookInfo> Playbook(const std::string& body) {
    return RunFixture::Playbook(body, "t", "local APP = '" + app + "'\n");
  }
  std::unique_ptr<PlaybookRun> Run(std::shared_ptr<const PlaybookInfo> pb, bool dry_run,
                                   PlaybookLimits limits = {}) {
    return RunFixture::Run(std::move(pb), limits, dry_run);
  }
};

std::vector<std::string> Texts(const PlaybookRun& run) {
  std::vector<std::string> out;
  for (const auto& a : run.recorded()) out.push_back(a.phase + ": " + DryRunText(a));
  return out;
}

// Keeps the broken file aside, then rewrites it, removes a lock, renames a file, runs a
// program and logs: every kind of action, across two phases.
const char* kActingPlaybook =
    "backup = function(ctx)\n"
    "  assert(guardian.fs.mkdir(ctx.state_dir .. '/aside'))\n"
    "  assert(guardian.fs.copy(APP .. '/app.yaml', ctx.state_dir .. '/aside/app.yaml'))\n"
    "  guardian.state.set('aside', ctx.state_dir .. '/aside/app.yaml')\n"
    "  return 'kept'\n"
    "end,\n"
    "remediate = function(ctx)\n"
    "  assert(guardian.fs.write(APP .. '/app.yaml', 'port: 8080\\n'))\n"
    "  assert(guardian.fs.remove(APP .. '/stale.lock'))\n"
    "  assert(guardian.fs.move(APP .. '/old.yaml', APP .. '/new.yaml'))\n"
    "  local r = assert(guardian.proc.run({'/bin/touch', APP .. '/touched'}))\n"
    "  guardian.log.info('touched with code ' .. r.code)\n"
    "  return 'code ' .. r.code .. ' out [' .. r.stdout .. r.stderr .. '] aside ' ..\n"
    "         guardian.state.get('aside')\n"
    "end,\n";

void WriteFiles(const Fixture& f) {
  std::ofstream(f.app + "/app.yaml") << "broken: [\n";
  std::ofstream(f.app + "/stale.lock") << "lock";
  std::ofstream(f.app + "/old.yaml") << "old: 1\n";
}

}  // namespace

TEST_CASE("a dry run changes nothing and records each action in order under its phase") {
  Fixture f;
  WriteFiles(f);
  auto run = f.Run(f.Playbook(kActingPlaybook), true);
  auto [s1, m1] = f.Phase(*run, "backup");
  CHECK_MESSAGE(s1.ok(), m1);
  auto [s2, m2] = f.Phase(*run, "remediate");
  CHECK_MESSAGE(s2.ok(), m2);
  // Each call answered as success does: proc.run exit 0 and no output, and the state value set
  // in backup is seen by remediate.
  CHECK(m2 == "code 0 out [] aside " + f.state + "/aside/app.yaml");

  CHECK(ReadFile(f.app + "/app.yaml") == "broken: [\n");
  CHECK(ReadFile(f.app + "/stale.lock") == "lock");
  CHECK(ReadFile(f.app + "/old.yaml") == "old: 1\n");
  CHECK_FALSE(fs::exists(f.app + "/new.yaml"));
  CHECK_FALSE(fs::exists(f.app + "/touched"));
  CHECK_FALSE(fs::exists(f.state + "/aside"));
  CHECK(f.values.count("aside") == 0);  // nothing reached the store
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(f.app)) files.push_back(e.path().filename());
  CHECK(files.size() == 3);  // no temp file left either
  // Logging is not an action: the line was logged for real as well as recorded.
  CHECK(f.logs == std::vector<std::string>{"info: touched with code 0"});

  std::vector<std::string> expected = {
      "backup: guardian.fs.mkdir(\"" + f.state + "/aside\")",
      "backup: guardian.fs.copy(\"" + f.app + "/app.yaml\", \"" + f.state + "/aside/app.yaml\")",
      "backup: guardian.state.set(\"aside\", \"" + f.state +
          "/aside/app.yaml\") -- kept in this dry run only",
      "remediate: guardian.fs.write(\"" + f.app + "/app.yaml\", \"port: 8080\\n\")",
      "remediate: guardian.fs.remove(\"" + f.app + "/stale.lock\")",
      "remediate: guardian.fs.move(\"" + f.app + "/old.yaml\", \"" + f.app + "/new.yaml\")",
      "remediate: guardian.proc.run({\"/bin/touch\", \"" + f.app +
          "/touched\"}) -- not started; answered code 0 with empty output",
      "remediate: guardian.log.info(\"touched with code 0\")",
  };
  CHECK(Texts(*run) == expected);
  REQUIRE(run->recorded().size() == expected.size());
  const DryRunAction& copy = run->recorded()[1];
  CHECK(copy.phase == "backup");
  CHECK(copy.call == "guardian.fs.copy");
  CHECK(copy.args == "\"" + f.app + "/app.yaml\", \"" + f.state + "/aside/app.yaml\"");
  CHECK(copy.note.empty());
}

TEST_CASE("control: the same playbook without dry run acts and records nothing") {
  Fixture f;
  WriteFiles(f);
  auto run = f.Run(f.Playbook(kActingPlaybook), false);
  auto [s1, m1] = f.Phase(*run, "backup");
  CHECK_MESSAGE(s1.ok(), m1);
  auto [s2, m2] = f.Phase(*run, "remediate");
  CHECK_MESSAGE(s2.ok(), m2);
  CHECK(m2 == "code 0 out [] aside " + f.state + "/aside/app.yaml");

  CHECK(ReadFile(f.app + "/app.yaml") == "port: 8080\n");
  CHECK(ReadFile(f.state + "/aside/app.yaml") == "broken: [\n");
  CHECK_FALSE(fs::exists(f.app + "/stale.lock"));
  CHECK_FALSE(fs::exists(f.app + "/old.yaml"));
  CHECK(ReadFile(f.app + "/new.yaml") == "old: 1\n");
  CHECK(fs::exists(f.app + "/touched"));
  CHECK(f.values["aside"] == f.state + "/aside/app.yaml");
  CHECK(run->recorded().empty());
}

TEST_CASE("a dry sleep answers at once") {
  Fixture f;
  auto pb = f.Playbook("remediate = function(ctx) guardian.sleep(5000) return 'woke' end");
  // The playbook's deadline is 2 s: had the sleep waited, the phase would have failed.
  auto run = f.Run(pb, true);
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_MESSAGE(s.ok(), msg);
  CHECK(msg == "woke");
  CHECK(Texts(*run) ==
        std::vector<std::string>{"remediate: guardian.sleep(5000) -- answered at once instead of "
                                 "waiting 5000 ms"});

  // Control, with a short deadline to keep the test quick: a real sleep does wait.
  PlaybookLimits limits;
  limits.phase_timeout_ms = 100;
  auto real = f.Run(pb, false, limits);
  auto [s2, m2] = f.Phase(*real, "remediate");
  CHECK_FALSE(s2.ok());
  CHECK(m2.find("deadline") != std::string::npos);
}

TEST_CASE("the path policy still holds in a dry run") {
  Fixture f;
  WriteFiles(f);
  fs::create_directories(f.dir / "outside");
  fs::create_symlink(f.dir / "outside", f.dir / "app" / "link");
  auto run =
      f.Run(f.Playbook("remediate = function(ctx)\n"
                       "  guardian.log.info('start')\n"
                       "  guardian.fs.copy(APP .. '/app.yaml', '/etc/guardian-dry-pwned')\n"
                       "end,\n"
                       "verify = function(ctx) guardian.fs.write(APP .. '/link/x', 'x') end,\n"
                       "rollback = function(ctx) guardian.fs.remove('relative') end,\n"),
            true);
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_FALSE(s.ok());
  CHECK(msg.find("guardian.fs: path '/etc/guardian-dry-pwned' is outside what check 'app' "
                 "declares writable") != std::string::npos);
  auto [s2, m2] = f.Phase(*run, "verify");
  CHECK_FALSE(s2.ok());
  CHECK(m2.find("is outside what check 'app' declares writable") != std::string::npos);
  auto [s3, m3] = f.Phase(*run, "rollback");
  CHECK_FALSE(s3.ok());
  CHECK(m3.find("must be absolute") != std::string::npos);
  // The refused calls are not recorded as if they would have happened.
  CHECK(Texts(*run) == std::vector<std::string>{"remediate: guardian.log.info(\"start\")"});
}

TEST_CASE("reads in a dry run see the real files and values, so the branch taken is the real one") {
  Fixture f;
  std::ofstream(f.app + "/app.yaml") << "broken: [\n";
  f.values["seen"] = "yes";
  auto pb = f.Playbook(
      "remediate = function(ctx)\n"
      "  local marker = APP .. '/marker'\n"
      "  if guardian.fs.exists(marker) then\n"
      "    assert(guardian.fs.write(APP .. '/app.yaml', guardian.fs.read(marker)))\n"
      "  else\n"
      "    assert(guardian.fs.remove(APP .. '/app.yaml'))\n"
      "  end\n"
      "  local ok, why = guardian.fs.check_yaml(APP .. '/app.yaml')\n"
      "  local names = table.concat(guardian.fs.list(APP), ',')\n"
      "  return guardian.state.get('seen') .. '|' .. guardian.fs.stat(APP .. '/app.yaml').size ..\n"
      "         '|' .. tostring(ok) .. '|' .. names\n"
      "end");

  SUBCASE("marker present") {
    std::ofstream(f.app + "/marker") << "port: 1\n";
    auto run = f.Run(pb, true);
    auto [s, msg] = f.Phase(*run, "remediate");
    CHECK_MESSAGE(s.ok(), msg);
    // The file is still the real, broken one: the write was not done.
    CHECK(msg == "yes|10|nil|app.yaml,marker");
    CHECK(Texts(*run) == std::vector<std::string>{"remediate: guardian.fs.write(\"" + f.app +
                                                  "/app.yaml\", \"port: 1\\n\")"});
  }
  SUBCASE("marker absent") {
    auto run = f.Run(pb, true);
    auto [s, msg] = f.Phase(*run, "remediate");
    CHECK_MESSAGE(s.ok(), msg);
    CHECK(msg == "yes|10|nil|app.yaml");
    CHECK(Texts(*run) ==
          std::vector<std::string>{"remediate: guardian.fs.remove(\"" + f.app + "/app.yaml\")"});
  }
  CHECK(ReadFile(f.app + "/app.yaml") == "broken: [\n");
}

TEST_CASE("a dry call that would wait still fails where a real wait cannot happen") {
  Fixture f;
  auto run = f.Run(f.Playbook("remediate = function(ctx)\n"
                              "  table.sort({2, 1}, function(a, b)\n"
                              "    guardian.fs.write(APP .. '/x', 'x') return a < b end)\n"
                              "end"),
                   true);
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_FALSE(s.ok());
  CHECK(msg.find("guardian.fs.write can only wait inside a phase function") != std::string::npos);
  CHECK(run->recorded().empty());
}

TEST_CASE("recorded arguments are short and readable; the record converts to JSON") {
  Fixture f;
  auto run =
      f.Run(f.Playbook("remediate = function(ctx)\n"
                       "  guardian.fs.write(APP .. '/a', string.rep('x', 100))\n"
                       "  guardian.fs.write(APP .. '/b', 'say \"hi\"\\t\\1')\n"
                       "  guardian.proc.run({'/bin/true', 1, 2, 3, 4, 5, 6, 7}, {timeout_ms = 100, "
                       "cwd = '/tmp'})\n"
                       "  guardian.state.set('k', 42)\n"
                       "  guardian.state.set('k')\n"
                       "  guardian.log.warn({})\n"
                       "  return tostring(guardian.state.get('k'))\n"
                       "end"),
            true);
  auto [s, msg] = f.Phase(*run, "remediate");
  // proc.run refuses a non-string argv entry before the dry-run gate, as a real run would.
  CHECK_FALSE(s.ok());
  CHECK(msg.find("argv[2] must be a string") != std::string::npos);
  std::vector<std::string> args;
  for (const auto& a : run->recorded()) args.push_back(a.args);
  CHECK(args == std::vector<std::string>{
                    "\"" + f.app + "/a\", \"" + std::string(60, 'x') + "...\" (100 bytes)",
                    "\"" + f.app + "/b\", \"say \\\"hi\\\"\\t\\1\""});

  auto run2 = f.Run(f.Playbook("remediate = function(ctx)\n"
                               "  guardian.proc.run({'/bin/true', '1', '2', '3', '4', '5', '6'}, "
                               "{timeout_ms = 100, cwd = '/tmp'})\n"
                               "  guardian.state.set('k', 42)\n"
                               "  guardian.state.set('k')\n"
                               "  guardian.log.warn(true)\n"
                               "  return tostring(guardian.state.get('k'))\n"
                               "end"),
                    true);
  auto [s2, m2] = f.Phase(*run2, "remediate");
  CHECK_MESSAGE(s2.ok(), m2);
  CHECK(m2 == "nil");  // cleared by the second set, in the run only
  args.clear();
  for (const auto& a : run2->recorded()) args.push_back(a.args);
  CHECK(args == std::vector<std::string>{
                    "{\"/bin/true\", \"1\", \"2\", \"3\", \"4\", \"5\", ...}, {cwd = \"/tmp\", "
                    "timeout_ms = 100}",
                    "\"k\", 42", "\"k\", nil", "\"true\""});

  nlohmann::json j = DryRunJson(run2->recorded());
  REQUIRE(j.is_array());
  REQUIRE(j.size() == 4);
  CHECK(j[1] == nlohmann::json{{"phase", "remediate"},
                               {"call", "guardian.state.set"},
                               {"args", "\"k\", 42"},
                               {"note", "kept in this dry run only"}});
  nlohmann::json direct = run2->recorded();  // to_json, found by ADL
  CHECK(direct == j);
}

TEST_CASE("a playbook looping over actions cannot grow the record without bound") {
  Fixture f;
  auto run =
      f.Run(f.Playbook("remediate = function(ctx)\n"
                       "  for i = 1, 1500 do assert(guardian.fs.mkdir(APP .. '/d' .. i)) end\n"
                       "end"),
            true);
  auto [s, msg] = f.Phase(*run, "remediate");
  CHECK_MESSAGE(s.ok(), msg);
  REQUIRE(run->recorded().size() == PlaybookRun::kMaxRecorded + 1);
  CHECK(run->recorded().back().note == "stopped recording after 1000 calls");
  CHECK_FALSE(fs::exists(f.app + "/d1500"));
}
