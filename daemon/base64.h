#pragma once
// Base64 (RFC 4648, with padding) through Nettle's coder: etcd's JSON gateway carries keys
// and values as base64 bytes.

#include <optional>
#include <string>
#include <string_view>

namespace guardian {

std::string Base64Encode(std::string_view bytes);
// nullopt when `text` is not valid base64.
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace guardian
