#include "daemon/port_registry.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "daemon/file_util.h"

namespace guardian {

using nlohmann::json;

Status ParsePortRegistry(const std::string& text, PortTable* out) {
  out->clear();
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return Status::Corruption("not a JSON object");
  auto services = doc.find("services");
  if (services == doc.end()) return Status::OK();
  if (!services->is_object()) return Status::Corruption("\"services\" is not an object");
  for (const auto& [name, entry] : services->items()) {
    // Named capture: clang before 16 cannot capture a structured binding.
    auto port_in = [&entry = entry](const char* key) -> int {
      auto it = entry.find(key);
      if (it == entry.end() || !it->is_number_integer()) return 0;
      int64_t v = it->get<int64_t>();
      return (v >= 1 && v <= 65535) ? static_cast<int>(v) : 0;
    };
    if (!entry.is_object()) return Status::Corruption("services." + name + " is not an object");
    PortAssignment a;
    a.port = port_in("port");
    a.preferred = port_in("preferred");
    if (a.port == 0 || a.preferred == 0)
      return Status::Corruption("services." + name + ": port and preferred must be 1..65535");
    a.lo = a.hi = a.preferred;
    if (auto r = entry.find("range"); r != entry.end()) {
      if (!r->is_array() || r->size() != 2 || !(*r)[0].is_number_integer() ||
          !(*r)[1].is_number_integer())
        return Status::Corruption("services." + name + ".range is not [first, last]");
      a.lo = (*r)[0].get<int>();
      a.hi = (*r)[1].get<int>();
    }
    if (auto m = entry.find("moved_at"); m != entry.end() && m->is_number_integer())
      a.moved_at = m->get<int64_t>();
    if (auto why = entry.find("reason"); why != entry.end() && why->is_string())
      a.reason = why->get<std::string>();
    (*out)[name] = a;
  }
  return Status::OK();
}

std::string SerializePortRegistry(const PortTable& table) {
  json services = json::object();
  for (const auto& [name, a] : table) {
    json entry = {{"port", a.port}, {"preferred", a.preferred}, {"range", {a.lo, a.hi}}};
    if (a.moved()) {
      entry["moved_at"] = a.moved_at;
      entry["reason"] = a.reason;
    }
    services[name] = std::move(entry);
  }
  return json{{"services", services}}.dump(2) + "\n";
}

PortTable ReconcilePorts(const PortTable& existing, const std::vector<ServiceConfig>& services) {
  PortTable out;
  for (const auto& s : services) {
    if (s.port_preferred == 0) continue;
    PortAssignment a;
    a.preferred = s.port_preferred;
    a.lo = s.port_lo;
    a.hi = s.port_hi;
    a.port = a.preferred;
    auto it = existing.find(s.name);
    // A move made for a conflict survives restarts of Guardian, but only within today's range.
    if (it != existing.end() && it->second.preferred == a.preferred && it->second.port >= a.lo &&
        it->second.port <= a.hi) {
      a.port = it->second.port;
      if (a.moved()) {
        a.moved_at = it->second.moved_at;
        a.reason = it->second.reason;
      }
    }
    out[s.name] = a;
  }
  return out;
}

Status LoadPortRegistry(const std::string& path, PortTable* out) {
  out->clear();
  std::string text;
  Status s = ReadRegularFile(path, 1 << 20, &text);
  if (!s.ok()) return s;
  s = ParsePortRegistry(text, out);
  if (!s.ok()) return Status::Corruption(path + ": " + s.message());
  return Status::OK();
}

Status SavePortRegistry(const std::string& path, const PortTable& table) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  return WriteFileAtomic(path, SerializePortRegistry(table));
}

}  // namespace guardian
