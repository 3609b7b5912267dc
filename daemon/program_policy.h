#pragma once
// Which programs a playbook may start with guardian.proc.run. A check's `programs:` (or
// `playbook_limits.programs` for every check) lists them, and then nothing else runs. Without
// a list any program runs but a shell or a launcher that runs a command given in its own
// arguments (env, xargs, sudo, ...): those would turn a playbook's argv back into a command
// line. A name list cannot know every program that can start another (python3 -c, find
// -exec), so the list is the guarantee and the default only stops the obvious.
//
// Plain functions, no loop: the config loader checks a check's own commands (on_fail, start,
// stop) with them, and guardian.proc.run checks every call.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/status.h"

namespace guardian {

// The PATH every spawned process starts with, unless its config's `env` sets one.
inline constexpr char kSpawnPath[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The file `argv0` names: itself when it holds a slash (then it must be absolute), else the
// first executable regular file of that name in the folders of `path_env` (a PATH value).
// NotFound when there is none, InvalidArgument for a relative path.
Status FindProgram(const std::string& argv0, const std::string& path_env, std::string* file);

// Whether `file` (an absolute path, as FindProgram gives it) may run. With `allowed`, only a
// file that is one of the listed programs (compared after following symlinks); without, any
// file whose real name is not a shell or a launcher. PermissionDenied says why not.
Status CheckProgram(const std::string& file,
                    const std::optional<std::vector<std::string>>& allowed);

// The PATH a check's programs are looked up in: its `env`'s PATH, else kSpawnPath.
std::string ProgramSearchPath(const std::map<std::string, std::string>& env);

// FindProgram in `env`'s PATH, then CheckProgram: OK with the file to run; NotFound when there
// is no such program (its start fails as any missing program's would); InvalidArgument or
// PermissionDenied when the policy refuses it. What the config loader and guardian.proc.run
// both ask.
Status ResolveProgram(const std::string& argv0, const std::map<std::string, std::string>& env,
                      const std::optional<std::vector<std::string>>& allowed, std::string* file);

// Whether a program's file name (of its real file: /bin/sh is dash on Debian) is a shell or a
// launcher of other commands.
bool IsShellOrLauncher(std::string_view name);

}  // namespace guardian
