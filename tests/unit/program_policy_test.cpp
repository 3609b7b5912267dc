// Program policy tests: how guardian.proc.run finds a program, and which ones it refuses, on
// real files (shells of the machine, symlinks and scripts made in a temp folder).

#include "daemon/program_policy.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/unit/temp_dir.h"

namespace guardian {
namespace {

namespace fs = std::filesystem;

// An executable (or not) file `name` in `dir`.
std::string MakeFile(const TempDir& dir, const std::string& name, int mode) {
  std::string p = (dir.path / name).string();
  std::ofstream(p) << "#!/usr/bin/true\n";
  ::chmod(p.c_str(), static_cast<mode_t>(mode));
  return p;
}

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST_CASE("FindProgram: an absolute path as is, a name in PATH's absolute folders only") {
  TempDir t;
  std::string remedy = MakeFile(t, "remedy", 0755);
  MakeFile(t, "plain", 0644);
  std::string found;
  REQUIRE(FindProgram(remedy, "", &found).ok());
  CHECK(found == remedy);
  // The first folder holding an executable file of that name wins; a non-executable is passed.
  REQUIRE(FindProgram("remedy", "/nonexistent:" + t.path.string() + ":/usr/bin", &found).ok());
  CHECK(found == remedy);
  CHECK(FindProgram("plain", t.path.string(), &found).code() == Status::Code::kNotFound);
  CHECK(FindProgram((t.path / "plain").string(), "", &found).code() == Status::Code::kNotFound);
  CHECK(FindProgram(t.path.string(), "", &found).code() == Status::Code::kNotFound);  // a folder
  // An empty or relative PATH entry would mean guardiand's working folder: never searched.
  REQUIRE(::chdir(t.path.c_str()) == 0);
  CHECK(FindProgram("remedy", ":.:bin", &found).code() == Status::Code::kNotFound);
  REQUIRE(::chdir("/") == 0);
  Status s = FindProgram("bin/remedy", "/usr/bin", &found);
  CHECK(s.code() == Status::Code::kInvalidArgument);
  CHECK(Contains(s.message(), "must be an absolute path or a name looked up in PATH"));
  CHECK(FindProgram("", "/usr/bin", &found).code() == Status::Code::kInvalidArgument);
  // ResolveProgram: looked up in the check's own PATH when its env sets one, then judged.
  REQUIRE(ResolveProgram("remedy", {{"PATH", t.path.string()}}, std::nullopt, &found).ok());
  CHECK(found == remedy);
  CHECK(ResolveProgram("remedy", {}, std::nullopt, &found).code() == Status::Code::kNotFound);
  CHECK(ResolveProgram("sh", {}, std::nullopt, &found).code() == Status::Code::kPermissionDenied);
}

TEST_CASE("without a list: shells and launchers are refused by their real file's name") {
  TempDir t;
  CHECK(CheckProgram("/usr/bin/printf", std::nullopt).ok());
  CHECK(CheckProgram(MakeFile(t, "remedy.sh", 0755), std::nullopt)
            .ok());  // a script is the operator's
  for (const char* p :
       {"/bin/sh", "/bin/bash", "/usr/bin/env", "/usr/bin/xargs", "/usr/bin/timeout"}) {
    INFO(p);
    Status s = CheckProgram(p, std::nullopt);
    CHECK(s.code() == Status::Code::kPermissionDenied);
    CHECK(Contains(s.message(), "is a shell or runs the command in its arguments"));
  }
  // A symlink of an innocent name still runs bash: the real file's name is what counts.
  std::string tool = (t.path / "restart-web").string();
  fs::create_symlink("/bin/bash", tool);
  Status s = CheckProgram(tool, std::nullopt);
  CHECK(s.code() == Status::Code::kPermissionDenied);
  CHECK(Contains(s.message(), "'" + tool + "' (" + fs::canonical("/bin/bash").string() + ")"));
  CHECK(IsShellOrLauncher("dash"));
  CHECK(IsShellOrLauncher("busybox"));
  CHECK_FALSE(IsShellOrLauncher("python3"));  // a language, often a remedy's: list to refuse
  CHECK_FALSE(IsShellOrLauncher("systemctl"));
}

TEST_CASE("with a list: only its programs run, matched through symlinks, shells included") {
  TempDir t;
  std::string remedy = MakeFile(t, "remedy", 0755);
  std::string link = (t.path / "remedy-link").string();
  fs::create_symlink(remedy, link);
  std::vector<std::string> list = {link, "/bin/sh"};
  CHECK(CheckProgram(remedy, list).ok());  // listed through its symlink
  CHECK(CheckProgram(link, list).ok());
  CHECK(CheckProgram("/bin/sh", list).ok());                          // a listed shell runs
  CHECK(CheckProgram(fs::canonical("/bin/sh").string(), list).ok());  // the same file
  Status s = CheckProgram("/usr/bin/printf", list);
  CHECK(s.code() == Status::Code::kPermissionDenied);
  CHECK(s.message() == "'/usr/bin/printf' is not in the check's programs (" + link + ", /bin/sh)");
  s = CheckProgram("/usr/bin/printf", std::vector<std::string>{});
  CHECK(s.message() == "'/usr/bin/printf' is not in the check's programs (none)");
}

}  // namespace
}  // namespace guardian
