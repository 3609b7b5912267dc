#include "daemon/memory_probe.h"

#include <dirent.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>

#include "daemon/file_util.h"
#include "daemon/format.h"
#include "daemon/proc_identity.h"

namespace guardian {
namespace {

constexpr size_t kMaxProcFile = 64 << 10;

// The number after `key` at the start of a line of `text` ("MemAvailable:  123 kB"), or -1.
int64_t FieldAfter(const std::string& text, const std::string& key) {
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    if (text.compare(at, key.size(), key) == 0) {
      const char* p = text.c_str() + at + key.size();
      char* stop = nullptr;
      long long v = std::strtoll(p, &stop, 10);
      if (stop != p) return v;
    }
    at = end + 1;
  }
  return -1;
}

}  // namespace

Status ParseMemInfo(const std::string& text, MemInfo* out) {
  int64_t total = FieldAfter(text, "MemTotal:");
  int64_t available = FieldAfter(text, "MemAvailable:");
  if (total <= 0 || available < 0)
    return Status::Corruption("no MemTotal/MemAvailable lines in /proc/meminfo");
  out->total_bytes = static_cast<uint64_t>(total) * 1024;
  out->available_bytes = static_cast<uint64_t>(available) * 1024;
  return Status::OK();
}

Status ReadMemInfo(MemInfo* out) {
  std::string text;
  Status s = ReadRegularFile("/proc/meminfo", kMaxProcFile, &text);
  return s.ok() ? ParseMemInfo(text, out) : s;
}

Status ParsePsi(const std::string& text, Psi* out) {
  // "some avg10=0.31 avg60=0.10 avg300=0.02 total=123456\nfull avg10=..."
  bool some = false;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    double avg10 = 0;
    unsigned long long total = 0;
    char kind[8] = {0};
    if (std::sscanf(line.c_str(), "%7s avg10=%lf avg60=%*f avg300=%*f total=%llu", kind, &avg10,
                    &total) != 3)
      continue;
    if (std::string(kind) == "some") {
      out->some_avg10 = avg10;
      out->some_total_us = total;
      some = true;
    } else if (std::string(kind) == "full") {
      out->full_avg10 = avg10;
    }
  }
  return some ? Status::OK() : Status::Corruption("no 'some avg10=' line in the PSI file");
}

Status ReadPsi(const std::string& path, Psi* out) {
  std::string text;
  Status s = ReadRegularFile(path, kMaxProcFile, &text);
  if (!s.ok()) return s;
  s = ParsePsi(text, out);
  return s.ok() ? s : Status::Corruption(path + ": " + s.message());
}

uint64_t ParseVmRss(const std::string& status_text) {
  int64_t kb = FieldAfter(status_text, "VmRSS:");
  return kb > 0 ? static_cast<uint64_t>(kb) * 1024 : 0;
}

Status ReadTreeRss(pid_t pid, uint64_t* bytes) {
  // One pass over /proc for the parent links, then the tree below `pid`.
  std::multimap<pid_t, pid_t> children;
  if (DIR* d = ::opendir("/proc")) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
      ProcStat st;
      if (ReadProcStat(static_cast<pid_t>(std::atol(e->d_name)), &st).ok())
        children.emplace(st.ppid, st.pid);
    }
    ::closedir(d);
  }
  std::string text;
  Status s = ReadRegularFile("/proc/" + std::to_string(pid) + "/status", kMaxProcFile, &text);
  if (!s.ok()) return Status::NotFound("process " + std::to_string(pid) + " is gone");
  uint64_t total = ParseVmRss(text);
  std::vector<pid_t> todo;
  for (auto [it, end] = children.equal_range(pid); it != end; ++it) todo.push_back(it->second);
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    if (ReadRegularFile("/proc/" + std::to_string(p) + "/status", kMaxProcFile, &text).ok())
      total += ParseVmRss(text);  // one gone meanwhile counts nothing
    for (auto [it, end] = children.equal_range(p); it != end; ++it) todo.push_back(it->second);
  }
  *bytes = total;
  return Status::OK();
}

Status ReadOomKills(const std::string& cgroup_dir, uint64_t* kills) {
  for (const char* file : {"/memory.events", "/memory.oom_control"}) {
    std::string text;
    if (!ReadRegularFile(cgroup_dir + file, kMaxProcFile, &text).ok()) continue;
    int64_t n = FieldAfter(text, "oom_kill ");
    if (n < 0) return Status::Corruption(cgroup_dir + file + " has no oom_kill line");
    *kills = static_cast<uint64_t>(n);
    return Status::OK();
  }
  return Status::NotFound(cgroup_dir +
                          " is not a memory cgroup (no memory.events or memory.oom_control)");
}

MemoryVerdict JudgeMemory(const MemorySample& s, const MemoryLimits& l) {
  MemoryVerdict v;
  std::vector<std::string> figures;
  if (s.have_rss) {
    std::string f = "RSS " + FormatBytes(s.rss_bytes);
    if (l.rss_limit_bytes > 0) {
      f += " of " + FormatBytes(l.rss_limit_bytes);
      if (s.rss_bytes > l.rss_limit_bytes) {
        v.service_over = true;
        v.reasons.push_back("the service's RSS " + FormatBytes(s.rss_bytes) +
                            " is over its limit " + FormatBytes(l.rss_limit_bytes));
      }
    }
    figures.push_back(f);
  }
  if (s.new_oom_kills > 0) {
    v.service_over = true;
    v.reasons.push_back("the kernel OOM-killed " + std::to_string(s.new_oom_kills) +
                        " process(es) in the service's cgroup");
  }
  if (s.have_meminfo && s.mem.total_bytes > 0) {
    double pct =
        100.0 * static_cast<double>(s.mem.available_bytes) / static_cast<double>(s.mem.total_bytes);
    figures.push_back("MemAvailable " + FormatBytes(s.mem.available_bytes) + " (" +
                      FormatPercent(pct) + ")");
    bool low_bytes = l.min_available_bytes > 0 && s.mem.available_bytes < l.min_available_bytes;
    bool low_pct = l.min_available_percent > 0 && pct < l.min_available_percent;
    if (low_bytes || low_pct) {
      v.system_short = true;
      v.reasons.push_back("MemAvailable " + FormatBytes(s.mem.available_bytes) + " (" +
                          FormatPercent(pct) + ") is under " +
                          (low_bytes ? FormatBytes(l.min_available_bytes)
                                     : FormatPercent(l.min_available_percent)));
    }
  }
  if (s.have_psi) {
    figures.push_back("PSI some " + FormatPercent(s.psi.some_avg10) + " full " +
                      FormatPercent(s.psi.full_avg10));
    if (l.psi_some_avg10 > 0 && s.psi.some_avg10 > l.psi_some_avg10) {
      v.system_short = true;
      v.reasons.push_back("tasks stalled on memory " + FormatPercent(s.psi.some_avg10) +
                          " of the last 10 s (limit " + FormatPercent(l.psi_some_avg10) + ")");
    }
  }
  if (s.psi_triggered) {
    v.system_short = true;
    v.reasons.push_back("the kernel's PSI memory trigger fired");
  }
  for (size_t i = 0; i < figures.size(); ++i) v.figures += (i ? "; " : "") + figures[i];
  return v;
}

}  // namespace guardian
