#include "daemon/program_policy.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

namespace guardian {
namespace {

bool IsExecutableFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0;
}

// The path with every symlink followed, or "" when it does not resolve.
std::string RealPath(const std::string& path) {
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(path.c_str(), nullptr), &std::free);
  return real ? std::string(real.get()) : std::string();
}

std::string_view BaseName(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

bool IsShellOrLauncher(std::string_view name) {
  // Shells, multi-call binaries whose applets include one, and programs whose job is to run the
  // command in their arguments. Interpreters of a language (python3, perl) are not here: a
  // remedy is often written in one; list programs to shut them out too.
  static constexpr std::string_view kNames[] = {
      "sh",      "bash",    "rbash",   "dash",        "ash",     "zsh",     "ksh",
      "ksh93",   "mksh",    "pdksh",   "csh",         "tcsh",    "fish",    "yash",
      "posh",    "busybox", "toybox",  "env",         "xargs",   "nohup",   "setsid",
      "nice",    "ionice",  "timeout", "stdbuf",      "chroot",  "unshare", "nsenter",
      "sudo",    "su",      "runuser", "doas",        "setpriv", "script",  "flock",
      "taskset", "chrt",    "watch",   "systemd-run", "sg",      "newgrp",  "expect"};
  return std::find(std::begin(kNames), std::end(kNames), name) != std::end(kNames);
}

Status FindProgram(const std::string& argv0, const std::string& path_env, std::string* file) {
  if (argv0.empty()) return Status::InvalidArgument("the program's name is empty");
  if (argv0.find('/') != std::string::npos) {
    if (argv0[0] != '/') {
      return Status::InvalidArgument("program '" + argv0 +
                                     "' must be an absolute path or a name looked up in PATH");
    }
    if (!IsExecutableFile(argv0)) return Status::NotFound("no such file or directory");
    *file = argv0;
    return Status::OK();
  }
  size_t from = 0;
  while (from <= path_env.size()) {
    size_t colon = path_env.find(':', from);
    if (colon == std::string::npos) colon = path_env.size();
    std::string dir = path_env.substr(from, colon - from);
    from = colon + 1;
    if (dir.empty() || dir[0] != '/') continue;  // "" and relative folders mean the cwd: never
    std::string candidate = dir + "/" + argv0;
    if (IsExecutableFile(candidate)) {
      *file = candidate;
      return Status::OK();
    }
  }
  return Status::NotFound("no such file or directory");
}

std::string ProgramSearchPath(const std::map<std::string, std::string>& env) {
  auto it = env.find("PATH");
  return it == env.end() ? std::string(kSpawnPath) : it->second;
}

Status ResolveProgram(const std::string& argv0, const std::map<std::string, std::string>& env,
                      const std::optional<std::vector<std::string>>& allowed, std::string* file) {
  Status s = FindProgram(argv0, ProgramSearchPath(env), file);
  if (!s.ok()) return s;
  return CheckProgram(*file, allowed);
}

Status CheckProgram(const std::string& file,
                    const std::optional<std::vector<std::string>>& allowed) {
  std::string real = RealPath(file);
  if (real.empty()) real = file;
  if (allowed) {
    for (const auto& a : *allowed) {
      std::string listed = RealPath(a);
      if (listed.empty()) listed = a;
      if (listed == real) return Status::OK();
    }
    std::string list;
    for (const auto& a : *allowed) list += (list.empty() ? "" : ", ") + a;
    return Status::PermissionDenied("'" + file + "' is not in the check's programs (" +
                                    (list.empty() ? "none" : list) + ")");
  }
  if (IsShellOrLauncher(BaseName(real))) {
    std::string what = real == file ? "" : " (" + real + ")";
    return Status::PermissionDenied(
        "'" + file + "'" + what +
        " is a shell or runs the command in its arguments; a playbook may start it only when "
        "the check lists it in `programs`");
  }
  return Status::OK();
}

}  // namespace guardian
