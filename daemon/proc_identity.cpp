#include "daemon/proc_identity.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <vector>

namespace guardian {

bool ProcessIdentity::SameAs(const ProcessIdentity& other) const {
  // The start time alone tells a reused pid apart. The exe does not identify: a process changes
  // it by exec (a #! script's env, `ip netns exec`, any wrapper) and is still the one we started.
  return pid == other.pid && start_ticks == other.start_ticks;
}

std::string ProcessIdentity::ToString() const {
  return "pid " + std::to_string(pid) + " (started at tick " + std::to_string(start_ticks) +
         (exe.empty() ? "" : ", " + exe) + ")";
}

Status ParseProcStat(const std::string& text, ProcStat* out) {
  // "PID (COMM) STATE PPID PGRP ...": COMM may contain ") (", so the last ')' ends it.
  size_t close = text.rfind(')');
  if (close == std::string::npos || close + 2 >= text.size()) {
    return Status::Corruption("/proc stat: no command name in '" + text.substr(0, 64) + "'");
  }
  std::istringstream rest(text.substr(close + 2));
  std::vector<std::string> fields;  // fields[0] is field 3 (state)
  std::string f;
  while (rest >> f) fields.push_back(f);
  // starttime is field 22, i.e. fields[19].
  if (fields.size() < 20 || fields[0].size() != 1) {
    return Status::Corruption("/proc stat: too few fields (" + std::to_string(fields.size()) + ")");
  }
  auto number = [](const std::string& field, unsigned long long* v) {
    errno = 0;
    char* end = nullptr;
    *v = std::strtoull(field.c_str(), &end, 10);
    return errno == 0 && end != field.c_str() && *end == '\0';
  };
  unsigned long long ppid = 0, pgrp = 0, start = 0;
  if (!number(fields[19], &start)) {
    return Status::Corruption("/proc stat: bad starttime '" + fields[19] + "'");
  }
  if (!number(fields[1], &ppid) || !number(fields[2], &pgrp)) {
    return Status::Corruption("/proc stat: bad ppid or pgrp");
  }
  out->pid = static_cast<pid_t>(std::strtol(text.c_str(), nullptr, 10));
  out->state = fields[0][0];
  out->ppid = static_cast<pid_t>(ppid);
  out->pgrp = static_cast<pid_t>(pgrp);
  out->start_ticks = start;
  return Status::OK();
}

Status ParseProcStat(const std::string& text, char* state, uint64_t* start_ticks) {
  ProcStat st;
  Status s = ParseProcStat(text, &st);
  if (!s.ok()) return s;
  *state = st.state;
  *start_ticks = st.start_ticks;
  return Status::OK();
}

Status ReadProcStat(pid_t pid, ProcStat* out) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!in || !std::getline(in, text)) return Status::NotFound("no process " + std::to_string(pid));
  return ParseProcStat(text, out);
}

namespace {

// Every process in /proc for which `keep` says yes.
std::vector<ProcStat> WalkProc(const std::function<bool(const ProcStat&)>& keep) {
  std::vector<ProcStat> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    ProcStat st;  // a process gone meanwhile is skipped
    if (ReadProcStat(static_cast<pid_t>(std::atol(e->d_name)), &st).ok() && keep(st))
      out.push_back(st);
  }
  ::closedir(d);
  return out;
}

}  // namespace

std::vector<ProcStat> ListChildren(pid_t parent) {
  return WalkProc([parent](const ProcStat& st) { return st.ppid == parent; });
}

std::vector<ProcStat> ListProcesses() {
  return WalkProc([](const ProcStat& st) { return st.state != 'Z' && st.state != 'X'; });
}

int64_t StartTicksToWallMs(uint64_t start_ticks) {
  static const int64_t boot_s = [] {
    std::ifstream f("/proc/stat");
    std::string line;
    while (std::getline(f, line)) {
      if (line.compare(0, 6, "btime ") == 0) return std::atoll(line.c_str() + 6);
    }
    return 0LL;
  }();
  static const int64_t hz = ::sysconf(_SC_CLK_TCK);
  if (boot_s == 0 || hz <= 0) return 0;
  return boot_s * 1000 + static_cast<int64_t>(start_ticks) * 1000 / hz;
}

const std::string& BootId() {
  static const std::string id = [] {
    std::ifstream f("/proc/sys/kernel/random/boot_id");
    std::string s;
    std::getline(f, s);
    return s;
  }();
  return id;
}

std::string ReadEnvVar(pid_t pid, const std::string& name) {
  auto found = ReadEnvVars(pid, {name});
  return found.empty() ? "" : found.begin()->second;
}

std::map<std::string, std::string> ReadEnvVars(pid_t pid, const std::vector<std::string>& names) {
  std::map<std::string, std::string> out;
  std::ifstream f("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  std::string entry;
  while (out.size() < names.size() && std::getline(f, entry, '\0')) {
    size_t eq = entry.find('=');
    if (eq == std::string::npos) continue;
    for (const auto& name : names) {
      if (eq == name.size() && entry.compare(0, eq, name) == 0)
        out.emplace(name, entry.substr(eq + 1));
    }
  }
  return out;
}

Status ReadProcessIdentity(pid_t pid, ProcessIdentity* out) {
  if (pid <= 0) return Status::InvalidArgument("pid must be > 0, got " + std::to_string(pid));
  std::string dir = "/proc/" + std::to_string(pid);
  ProcStat st;
  Status s = ReadProcStat(pid, &st);
  if (!s.ok()) return s;
  char state = st.state;
  uint64_t ticks = st.start_ticks;
  if (state == 'Z' || state == 'X') {
    return Status::NotFound("process " + std::to_string(pid) + " has exited");
  }
  ProcessIdentity id;
  id.pid = pid;
  id.start_ticks = ticks;
  char buf[4096];
  ssize_t n = ::readlink((dir + "/exe").c_str(), buf, sizeof(buf) - 1);
  if (n > 0) id.exe.assign(buf, static_cast<size_t>(n));
  *out = std::move(id);
  return Status::OK();
}

Status SignalIfSame(const ProcessIdentity& id, int sig) {
  // The pidfd pins the process that has this pid now; if the identity read after opening it
  // matches, the signal reaches that process even if it exits and the pid is reused meanwhile.
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, id.pid, 0));
  if (fd < 0) {
    if (errno == ESRCH) return Status::NotFound(id.ToString() + " is gone");
    return Status::IOError("pidfd_open " + std::to_string(id.pid) + ": " + std::strerror(errno));
  }
  ProcessIdentity now;
  Status s = ReadProcessIdentity(id.pid, &now);
  if (!s.ok()) {
    ::close(fd);
    return s.code() == Status::Code::kNotFound ? Status::NotFound(id.ToString() + " is gone") : s;
  }
  if (!now.SameAs(id)) {
    ::close(fd);
    return Status::Busy("pid " + std::to_string(id.pid) + " now belongs to another process, " +
                        now.ToString() + "; not signalled");
  }
  int rc = static_cast<int>(::syscall(SYS_pidfd_send_signal, fd, sig, nullptr, 0));
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    if (err == ESRCH) return Status::NotFound(id.ToString() + " is gone");
    return Status::IOError("signal " + id.ToString() + ": " + std::strerror(err));
  }
  return Status::OK();
}

}  // namespace guardian
