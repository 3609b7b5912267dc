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
  for (const auto& key : required_keys) {
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
