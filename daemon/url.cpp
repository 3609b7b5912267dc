#include "daemon/url.h"

#include <http_parser.h>

#include <algorithm>
#include <cctype>

namespace guardian {

Status ParseUrl(std::string_view url, UrlParts* out) {
  http_parser_url u;
  http_parser_url_init(&u);
  if (http_parser_parse_url(url.data(), url.size(), 0, &u) != 0)
    return Status::InvalidArgument("not a valid URL: '" + std::string(url) + "'");
  auto field = [&](int f) {
    if (!(u.field_set & (1 << f))) return std::string();
    return std::string(url.substr(u.field_data[f].off, u.field_data[f].len));
  };
  UrlParts p;
  p.scheme = field(UF_SCHEMA);
  std::transform(p.scheme.begin(), p.scheme.end(), p.scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (p.scheme != "http" && p.scheme != "https")
    return Status::InvalidArgument("not an http or https URL: '" + std::string(url) + "'");
  p.host = field(UF_HOST);
  if (p.host.empty()) return Status::InvalidArgument("no host in URL '" + std::string(url) + "'");
  p.explicit_port = (u.field_set & (1 << UF_PORT)) != 0;
  p.port = p.explicit_port ? u.port : (p.scheme == "https" ? 443 : 80);
  if (p.port == 0) return Status::InvalidArgument("port 0 in URL '" + std::string(url) + "'");
  p.target = field(UF_PATH);
  if (p.target.empty()) p.target = "/";
  if (u.field_set & (1 << UF_QUERY)) p.target += "?" + field(UF_QUERY);
  p.has_userinfo = (u.field_set & (1 << UF_USERINFO)) != 0;
  *out = std::move(p);
  return Status::OK();
}

std::string HostForHeader(const UrlParts& u) {
  return u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
}

}  // namespace guardian
