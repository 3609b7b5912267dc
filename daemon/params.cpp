#include "daemon/params.h"

namespace guardian {

std::string ParamString(const Params& p, const std::string& name, const std::string& fallback) {
  auto it = p.find(name);
  if (it == p.end()) return fallback;
  if (auto* s = std::get_if<std::string>(&it->second)) return *s;
  return fallback;
}

int64_t ParamInt(const Params& p, const std::string& name, int64_t fallback) {
  auto it = p.find(name);
  if (it == p.end()) return fallback;
  if (auto* i = std::get_if<int64_t>(&it->second)) return *i;
  if (auto* d = std::get_if<double>(&it->second)) return static_cast<int64_t>(*d);
  return fallback;
}

double ParamNumber(const Params& p, const std::string& name, double fallback) {
  auto it = p.find(name);
  if (it == p.end()) return fallback;
  if (auto* d = std::get_if<double>(&it->second)) return *d;
  if (auto* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  return fallback;
}

bool ParamBool(const Params& p, const std::string& name, bool fallback) {
  auto it = p.find(name);
  if (it == p.end()) return fallback;
  if (auto* b = std::get_if<bool>(&it->second)) return *b;
  return fallback;
}

std::vector<std::string> ParamList(const Params& p, const std::string& name) {
  auto it = p.find(name);
  if (it == p.end()) return {};
  if (auto* l = std::get_if<std::vector<std::string>>(&it->second)) return *l;
  return {};
}

StringMap ParamMap(const Params& p, const std::string& name) {
  auto it = p.find(name);
  if (it == p.end()) return {};
  if (auto* m = std::get_if<StringMap>(&it->second)) return *m;
  return {};
}

}  // namespace guardian
