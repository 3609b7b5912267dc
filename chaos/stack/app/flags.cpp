// Reads, validates and watches flags.json. A bad file never replaces good flags: it only sets
// flags.error in the status, so the writer sees what was wrong.

#include "chaos/stack/app/flags.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "chaos/stack/app/log.h"
#include "chaos/stack/app/util.h"

namespace demoapp {

bool Flags::degraded(const std::string& feature) const {
  return std::find(degraded_features.begin(), degraded_features.end(), feature) !=
         degraded_features.end();
}

bool Flags::skips(const std::string& chunk) const {
  return std::find(skip_chunks.begin(), skip_chunks.end(), chunk) != skip_chunks.end();
}

nlohmann::json FlagsToJson(const Flags& f) {
  return {{"seq", f.seq},
          {"offline_mode", f.offline_mode},
          {"degraded_features", f.degraded_features},
          {"active_upstream", f.active_upstream},
          {"upstream_timeout_ms", f.upstream_timeout_ms},
          {"skip_chunks", f.skip_chunks},
          {"low_memory", f.low_memory}};
}

namespace {

bool StringList(const nlohmann::json& doc, const char* key, std::vector<std::string>* out,
                std::string* problem) {
  if (!doc.contains(key)) return true;
  const nlohmann::json& v = doc[key];
  if (!v.is_array()) {
    *problem = std::string(key) + ": expected an array of strings";
    return false;
  }
  out->clear();
  for (const nlohmann::json& item : v) {
    if (!item.is_string()) {
      *problem = std::string(key) + ": expected an array of strings";
      return false;
    }
    out->push_back(item.get<std::string>());
  }
  return true;
}

bool Bool(const nlohmann::json& doc, const char* key, bool* out, std::string* problem) {
  if (!doc.contains(key)) return true;
  if (!doc[key].is_boolean()) {
    *problem = std::string(key) + ": expected true or false";
    return false;
  }
  *out = doc[key].get<bool>();
  return true;
}

}  // namespace

bool ParseFlags(const std::string& text, const std::string& path, const Flags& defaults, Flags* out,
                std::string* error) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    *error = path + ": not valid JSON: " + e.what();
    return false;
  }
  if (!doc.is_object()) {
    *error = path + ": expected a JSON object";
    return false;
  }
  Flags f = defaults;
  std::string problem;
  if (doc.contains("seq")) {
    if (!doc["seq"].is_number_integer() || doc["seq"].get<int64_t>() < 0) {
      problem = "seq: expected a non-negative integer";
    } else {
      f.seq = doc["seq"].get<int64_t>();
    }
  }
  if (problem.empty() && doc.contains("active_upstream")) {
    const nlohmann::json& v = doc["active_upstream"];
    if (!v.is_string() || (v != "primary" && v != "backup")) {
      problem = "active_upstream: expected \"primary\" or \"backup\"";
    } else {
      f.active_upstream = v.get<std::string>();
    }
  }
  if (problem.empty() && doc.contains("upstream_timeout_ms")) {
    const nlohmann::json& v = doc["upstream_timeout_ms"];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 600000) {
      problem = "upstream_timeout_ms: expected an integer from 0 to 600000";
    } else {
      f.upstream_timeout_ms = v.get<int64_t>();
    }
  }
  if (problem.empty() && Bool(doc, "offline_mode", &f.offline_mode, &problem) &&
      Bool(doc, "low_memory", &f.low_memory, &problem) &&
      StringList(doc, "degraded_features", &f.degraded_features, &problem) &&
      StringList(doc, "skip_chunks", &f.skip_chunks, &problem)) {
    *out = std::move(f);
    return true;
  }
  *error = path + ": " + problem;
  return false;
}

FlagsStore::FlagsStore(std::string dir, Flags defaults, std::set<std::string> critical_chunks,
                       Log& log, ApplyFn on_apply)
    : dir_(std::move(dir)),
      path_(dir_ + "/flags.json"),
      defaults_(std::move(defaults)),
      critical_(std::move(critical_chunks)),
      log_(log),
      on_apply_(std::move(on_apply)),
      current_(defaults_) {}

FlagsStore::~FlagsStore() { StopWatch(); }

Flags FlagsStore::Get() const {
  std::lock_guard lock(mu_);
  return current_;
}

void FlagsStore::Load() {
  std::lock_guard load_lock(load_mu_);
  Flags old = Get();
  std::string text;
  int err = ReadFile(path_, 64 * 1024, &text);
  if (err == ENOENT) return;
  Flags next;
  std::string error;
  if (err != 0) {
    error = path_ + ": cannot read: " + strerror(err);
  } else if (ParseFlags(text, path_, defaults_, &next, &error)) {
    // Critical chunks always run: drop them from the list and say so.
    std::vector<std::string> kept;
    for (const std::string& name : next.skip_chunks) {
      if (critical_.count(name)) {
        error += (error.empty() ? path_ + ": skip_chunks: " : ", ") + name +
                 " is a critical chunk and cannot be skipped";
      } else {
        kept.push_back(name);
      }
    }
    next.skip_chunks = kept;
    {
      std::lock_guard lock(mu_);
      current_ = next;
    }
    log_.Info("flags applied: seq " + std::to_string(next.seq) + " " +
              FlagsToJson(next).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  if (!error.empty()) log_.Warn("flags: " + error);
  on_apply_(old, Get(), error);
}

bool FlagsStore::StartWatch() {
  inotify_fd_ = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (inotify_fd_ < 0 || stop_fd_ < 0 ||
      inotify_add_watch(inotify_fd_, dir_.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
    log_.Error("flags: cannot watch " + dir_ + ": " + strerror(errno) +
               " (flags are read on SIGHUP only)");
    StopWatch();
    return false;
  }
  thread_ = std::thread([this] { WatchLoop(); });
  return true;
}

void FlagsStore::StopWatch() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    if (write(stop_fd_, &one, sizeof one) < 0) {
      // An eventfd write cannot fail short of a counter overflow; the join below still ends.
    }
    thread_.join();
  }
  if (inotify_fd_ >= 0) close(inotify_fd_);
  if (stop_fd_ >= 0) close(stop_fd_);
  inotify_fd_ = stop_fd_ = -1;
}

void FlagsStore::WatchLoop() {
  alignas(inotify_event) char buf[4096];
  for (;;) {
    pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log_.Error(std::string("flags: poll failed: ") + strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    bool changed = false;
    for (;;) {
      ssize_t n = read(inotify_fd_, buf, sizeof buf);
      if (n <= 0) break;
      for (char* p = buf; p < buf + n;) {
        auto* ev = reinterpret_cast<inotify_event*>(p);
        if (ev->len > 0 && strcmp(ev->name, "flags.json") == 0) changed = true;
        if (ev->mask & IN_Q_OVERFLOW) changed = true;  // events lost: read to be sure
        p += sizeof(inotify_event) + ev->len;
      }
    }
    if (changed) Load();
  }
}

}  // namespace demoapp
