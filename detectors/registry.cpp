#include <cstdio>
#include <cstdlib>

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

ParamSchemaLookup DetectorRegistry::SchemaLookup() const {
  return [this](std::string_view mode) -> const std::vector<ParamSpec>* {
    const DetectorFactory* f = Find(mode);
    return f ? &f->params : nullptr;
  };
}

}  // namespace guardian
