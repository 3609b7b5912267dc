#pragma once
// ParseUrl: the parts of an http(s) URL, read by http-parser's URL parser. Config checks and
// plain probes read URLs without loading libcurl (see curl_lib.h).

#include <string>
#include <string_view>

#include "daemon/status.h"

namespace guardian {

struct UrlParts {
  std::string scheme;  // lower case: "http" or "https"
  std::string host;    // as written, without an IPv6 address's brackets
  int port = 0;        // the scheme's default (80, 443) when the URL names none
  bool explicit_port = false;
  std::string target;  // the request target: path and query, "/" at least
  bool has_userinfo = false;
};

// InvalidArgument naming what is wrong when `url` is not an absolute http(s) URL with a host.
Status ParseUrl(std::string_view url, UrlParts* out);

// The host as a Host header or URL writes it: "[::1]" for an IPv6 address.
std::string HostForHeader(const UrlParts& u);

}  // namespace guardian
