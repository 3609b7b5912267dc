#pragma once
// Validation of a YAML config file the way missing_config judges it: present, not empty,
// parsable, a mapping, with every required dotted key (e.g. "server.port") present and, when
// the key is written "server.port:int", of that type (int, number, bool, string, list, map).

#include <string>
#include <vector>

#include "daemon/status.h"

namespace guardian {

// Blocking (reads the file): call from the thread pool, never the loop thread.
Status CheckYamlFile(const std::string& path, const std::vector<std::string>& required_keys,
                     std::string* content = nullptr);
Status CheckYamlText(const std::string& text, const std::vector<std::string>& required_keys);

// False when a "key:type" names a type that is not one of the above.
bool KeyTypeValid(const std::string& spec);

}  // namespace guardian
