#pragma once
// ProcessIdentity: a process named by its pid AND its start time (clock ticks after boot, field
// 22 of /proc/PID/stat), with its executable. A pid alone is not a process: after an exit the
// kernel hands the number to the next program, so a stale pidfile or a remembered pid may name
// a stranger. SignalIfSame() signals only the very process that was identified, through a pidfd
// opened before the identity is checked, so not even a reuse between check and kill can hit
// another program.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "daemon/status.h"

namespace guardian {

struct ProcessIdentity {
  pid_t pid = 0;
  uint64_t start_ticks = 0;  // since boot, in clock ticks (sysconf(_SC_CLK_TCK))
  std::string exe;           // /proc/PID/exe's target; empty when it cannot be read

  // Same process: same pid and start time. The exe is for messages only (exec changes it).
  bool SameAs(const ProcessIdentity& other) const;
  std::string ToString() const;  // "pid 123 (started at tick 456, /usr/bin/app)"
};

// Reads the identity of the live process `pid`. NotFound when there is none, or when it has
// exited and only its zombie is left (it can no longer be signalled into doing anything).
Status ReadProcessIdentity(pid_t pid, ProcessIdentity* out);

// The fields of /proc/PID/stat that supervision needs.
struct ProcStat {
  pid_t pid = 0;
  char state = 0;  // R, S, D, Z (zombie), ...
  pid_t ppid = 0;
  pid_t pgrp = 0;
  uint64_t start_ticks = 0;
};
Status ParseProcStat(const std::string& text, ProcStat* out);

// Reads and parses /proc/PID/stat. NotFound when there is no such process.
Status ReadProcStat(pid_t pid, ProcStat* out);

// The processes whose parent is `parent` (for a subreaper: the orphans it inherited). Walks
// /proc: blocking, call on the pool.
std::vector<ProcStat> ListChildren(pid_t parent);

// This boot's id (/proc/sys/kernel/random/boot_id), read once; "" when it cannot be read. A
// pid and start time name one process only within one boot.
const std::string& BootId();

// The value of `name` in /proc/PID/environ (the environment the process started with), or ""
// when it is not set or cannot be read. Blocking: call on the pool.
std::string ReadEnvVar(pid_t pid, const std::string& name);
// The same for several names in one read; a name not set is missing from the map.
std::map<std::string, std::string> ReadEnvVars(pid_t pid, const std::vector<std::string>& names);

// Every live process (no zombies) in /proc. Blocking: call on the pool.
std::vector<ProcStat> ListProcesses();

// Wall-clock ms at which a process started `start_ticks` after boot. Approximate: the boot
// time the kernel gives is in whole seconds.
int64_t StartTicksToWallMs(uint64_t start_ticks);

// Parses the text of /proc/PID/stat (the command name in parentheses may hold spaces and
// parentheses). Exposed for tests.
Status ParseProcStat(const std::string& text, char* state, uint64_t* start_ticks);

// Sends `sig` to `id.pid` only if that pid still names the process `id` describes.
// NotFound: it is gone. Busy: the pid now belongs to another process (nothing is sent).
Status SignalIfSame(const ProcessIdentity& id, int sig);

}  // namespace guardian
