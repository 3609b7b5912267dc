#include "daemon/yaml_check.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "daemon/file_util.h"

namespace guardian {

// A config file larger than this is not a config file.
constexpr size_t kMaxConfigBytes = 16 << 20;

namespace {

bool Parses(const YAML::Node& n, auto* out) {
  try {
    *out = n.as<std::remove_pointer_t<decltype(out)>>();
    return true;
  } catch (const YAML::Exception&) {
    return false;
  }
}

// `type` is int, number, bool, string, list or map (KeyTypeValid says which are known).
bool HasType(const YAML::Node& n, const std::string& type) {
  if (type == "map") return n.IsMap();
  if (type == "list") return n.IsSequence();
  if (!n.IsScalar()) return false;
  if (type == "string") return true;
  if (type == "int") {
    int64_t v;
    return Parses(n, &v);
  }
  if (type == "number") {
    double v;
    return Parses(n, &v);
  }
  if (type == "bool") {
    bool v;
    return Parses(n, &v);
  }
  return false;
}

std::string TypeName(const std::string& type) {
  if (type == "int") return "an integer";
  if (type == "number") return "a number";
  if (type == "bool") return "true or false";
  if (type == "list") return "a sequence";
  if (type == "map") return "a mapping";
  return "a string";
}

}  // namespace

bool KeyTypeValid(const std::string& spec) {
  size_t colon = spec.rfind(':');
  if (colon == std::string::npos) return true;
  std::string type = spec.substr(colon + 1);
  return type == "int" || type == "number" || type == "bool" || type == "string" ||
         type == "list" || type == "map";
}

Status CheckYamlText(const std::string& text, const std::vector<std::string>& required_keys) {
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    return Status::Corruption("file is empty");
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Status::Corruption("YAML error at line " + std::to_string(e.mark.line + 1) +
                              ", column " + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  if (!root.IsMap()) return Status::Corruption("top level is not a mapping");
  for (const auto& spec : required_keys) {
    // "server.port" or "server.port:int": the key, and optionally the type its value must have.
    std::string key = spec, type;
    if (size_t colon = spec.rfind(':'); colon != std::string::npos) {
      key = spec.substr(0, colon);
      type = spec.substr(colon + 1);
    }
    // Walk with copies: yaml-cpp's operator[] on a non-const node would insert the key.
    YAML::Node cur = YAML::Clone(root);
    std::stringstream parts(key);
    std::string part;
    bool found = true;
    while (std::getline(parts, part, '.')) {
      if (!cur.IsMap() || !cur[part]) {
        found = false;
        break;
      }
      cur = cur[part];
    }
    if (!found || cur.IsNull()) return Status::Corruption("required key '" + key + "' is missing");
    if (!type.empty() && !HasType(cur, type)) {
      std::string shown = cur.IsScalar() ? "'" + cur.Scalar() + "'"
                          : cur.IsMap()  ? "a mapping"
                                         : "a sequence";
      return Status::Corruption("key '" + key + "' must be " + TypeName(type) + ", got " + shown);
    }
  }
  return Status::OK();
}

Status CheckYamlFile(const std::string& path, const std::vector<std::string>& required_keys,
                     std::string* content) {
  std::string text;
  Status s = ReadRegularFile(path, kMaxConfigBytes, &text);
  if (!s.ok()) return s;
  s = CheckYamlText(text, required_keys);
  if (content) *content = std::move(text);
  return s;
}

}  // namespace guardian
