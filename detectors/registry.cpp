#include <cstdio>
#include <cstdlib>

#include "daemon/fs_watch.h"
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

Status WatchServiceStatus(const DetectorEnv& env, std::function<void()> wake,
                          std::unique_ptr<FsWatch>* watch) {
  watch->reset();
  if (!env.service || env.service->status_file.empty()) return Status::OK();
  *watch = std::make_unique<FsWatch>(env.loop);
  Status s = (*watch)->StartForFile(env.service->status_file, std::move(wake));
  if (!s.ok()) return Status::IOError(s.message() + " (polling only)");
  return Status::OK();
}

ParamSchemaLookup DetectorRegistry::SchemaLookup() const {
  return [this](std::string_view mode) -> const std::vector<ParamSpec>* {
    const DetectorFactory* f = Find(mode);
    return f ? &f->params : nullptr;
  };
}

}  // namespace guardian
