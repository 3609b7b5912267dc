// Fuzzes the config loader: LoadConfigText on arbitrary YAML with the daemon's detector schemas.
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "daemon/config.h"
#include "detectors/detector.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The registry the daemon loads with (detectors register at static-init time).
  static const guardian::ParamSchemaLookup schemas =
      guardian::DetectorRegistry::Get().SchemaLookup();
  std::string_view text(reinterpret_cast<const char*>(data), size);
  guardian::ConfigLoad load =
      guardian::LoadConfigText(text, "guardian.yaml", "/etc/guardian", schemas);
  // Every error must render; a loaded config must answer lookups of what it holds.
  for (const auto& e : load.errors) (void)e.ToString();
  if (load.ok()) {
    for (const auto& c : load.config->checks) (void)load.config->FindCheck(c.id);
    for (const auto& s : load.config->services) (void)load.config->FindService(s.name);
  }
  return 0;
}
