#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "daemon/file_util.h"
#include "daemon/fs_watch.h"
#include "daemon/supervisor.h"
#include "daemon/url.h"
#include "detectors/detector.h"

namespace guardian {

DetectorRegistry& DetectorRegistry::Get() {
  static DetectorRegistry registry;
  return registry;
}

bool DetectorRegistry::Register(DetectorFactory factory) {
  if (Find(factory.mode) != nullptr) {
    // Two detectors for one mode is a build mistake, not a runtime condition.
    std::fprintf(stderr, "detector for mode '%s' registered twice\n", factory.mode.c_str());
    std::abort();
  }
  factories_.push_back(std::move(factory));
  return true;
}

const DetectorFactory* DetectorRegistry::Find(std::string_view mode) const {
  for (const auto& f : factories_) {
    if (f.mode == mode) return &f;
  }
  return nullptr;
}

std::vector<ParamSpec> WithRemedyParams(std::vector<ParamSpec> specs) {
  specs.push_back({"on_fail", ParamType::kCommand, false,
                   "argv the `exec` playbook runs when the check fails (no shell); none: alert "
                   "only"});
  specs.push_back({"on_fail_timeout_ms", ParamType::kInt, false,
                   "how long the command may run (default 30000)"});
  specs.push_back({"verify_ms", ParamType::kInt, false,
                   "how long the playbook waits for the check to pass after it (default 10000)"});
  return specs;
}

Status WatchServiceStatus(const DetectorEnv& env, std::function<void()> wake,
                          std::unique_ptr<FsWatch>* watch) {
  watch->reset();
  if (!env.service || env.service->status_file.empty()) return Status::OK();
  *watch = std::make_unique<FsWatch>(env.loop);
  Status s = (*watch)->StartForFile(env.service->status_file, std::move(wake));
  if (!s.ok()) return Status::IOError(s.message() + " (polling only)");
  return Status::OK();
}

namespace {

// The port of an http(s) URL on a loopback host, or 0.
int LoopbackPort(const std::string& url) {
  UrlParts u;
  if (!ParseUrl(url, &u).ok()) return 0;
  return u.host == "127.0.0.1" || u.host == "localhost" || u.host == "::1" ? u.port : 0;
}

}  // namespace

DegradedState ReadDegraded(const std::string& check_state_dir, const std::string& flags_file,
                           const std::string& feature, const std::string& flag) {
  DegradedState out;
  nlohmann::json doc;
  if (flags_file.empty() || !ReadJsonObject(flags_file, 1 << 20, &doc).ok()) return out;
  if (!flag.empty()) {
    out.degraded = doc.value(flag, false) == true;
  } else if (auto it = doc.find("degraded_features"); it != doc.end() && it->is_array()) {
    for (const auto& f : *it)
      if (f.is_string() && f.get<std::string>() == feature) out.degraded = true;
  }
  struct stat st {};
  std::string marker = check_state_dir + "/" + kDegradedMarker;
  out.by_this_check = out.degraded && ::stat(marker.c_str(), &st) == 0;
  return out;
}

std::string ServiceStartingAt(const DetectorEnv& env, const std::string& url) {
  if (env.supervisor == nullptr) return "";
  return env.supervisor->ComingUpAt(LoopbackPort(url));
}

ParamSchemaLookup DetectorRegistry::SchemaLookup() const {
  return [this](std::string_view mode) -> const std::vector<ParamSpec>* {
    const DetectorFactory* f = Find(mode);
    return f ? &f->params : nullptr;
  };
}

}  // namespace guardian
