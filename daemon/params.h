#pragma once
// Detector parameters: the typed values under a check's `params:` key, and the schema each
// detector declares for them so the config loader can reject bad params with file:line:col.

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace guardian {

enum class ParamType {
  kBool,
  kInt,     // integer; YAML `5`
  kNumber,  // floating point; YAML `5` or `5.5`
  kString,
  kPath,        // string; ${VAR}/${VAR:-default} expanded, relative resolved against config folder
  kStringList,  // sequence of strings
  kPathList,    // sequence of paths, each expanded and resolved as kPath
  kHeaders,     // mapping of HTTP header name: value; a value may be a secret reference
  kCommand,     // argv the check's playbook runs (guardian.proc.run): a sequence of strings
                // whose program the loader checks against the check's `programs`
};

struct ParamSpec {
  std::string name;
  ParamType type;
  bool required = false;
  std::string doc;                        // one line, shown by docs and errors
  std::vector<std::string> choices = {};  // kString only: the values allowed (empty: any)
};

using StringMap = std::map<std::string, std::string>;
using ParamValue =
    std::variant<bool, int64_t, double, std::string, std::vector<std::string>, StringMap>;
using Params = std::map<std::string, ParamValue>;

// Typed look-ups with a fallback; the loader has already checked types against the schema.
std::string ParamString(const Params& p, const std::string& name, const std::string& fallback = "");
int64_t ParamInt(const Params& p, const std::string& name, int64_t fallback);
double ParamNumber(const Params& p, const std::string& name, double fallback);
bool ParamBool(const Params& p, const std::string& name, bool fallback);
std::vector<std::string> ParamList(const Params& p, const std::string& name);
StringMap ParamMap(const Params& p, const std::string& name);

}  // namespace guardian
