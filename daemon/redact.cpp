#include "daemon/redact.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

namespace guardian {

Redactor& Redactor::Global() {
  // Never destroyed: a line logged while statics are torn down still goes through it.
  static Redactor* r = new Redactor;
  return *r;
}

void Redactor::Add(const std::vector<std::string>& secrets) {
  std::vector<std::string> add;
  for (const auto& s : secrets) {
    if (s.size() < kMinRedactedLength) continue;
    add.push_back(s);
    std::string json =
        nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    json = json.substr(1, json.size() - 2);  // without the quotes
    if (json != s) add.push_back(json);
  }
  if (add.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto next = std::make_shared<std::vector<std::string>>(*forms_);
  for (auto& a : add) {
    if (std::find(next->begin(), next->end(), a) == next->end()) next->push_back(std::move(a));
  }
  std::stable_sort(next->begin(), next->end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  forms_ = std::move(next);
}

bool Redactor::empty() const {
  std::lock_guard<std::mutex> lock(mu_);
  return forms_->empty();
}

std::optional<std::string> Redactor::Redacted(std::string_view text) const {
  std::shared_ptr<const std::vector<std::string>> forms;
  {
    std::lock_guard<std::mutex> lock(mu_);
    forms = forms_;
  }
  std::optional<std::string> out;
  for (const auto& f : *forms) {
    std::string_view current = out ? std::string_view(*out) : text;
    size_t at = current.find(f);
    if (at == std::string_view::npos) continue;
    std::string next;
    next.reserve(current.size());
    size_t from = 0;
    while (at != std::string_view::npos) {
      next.append(current.substr(from, at - from));
      next.append(kRedacted);
      from = at + f.size();
      at = current.find(f, from);
    }
    next.append(current.substr(from));
    out = std::move(next);
  }
  return out;
}

std::string Redactor::Redact(std::string_view text) const {
  if (auto r = Redacted(text)) return std::move(*r);
  return std::string(text);
}

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

bool IsSecretName(std::string_view name) {
  std::string n = Lower(name);
  // Where a secret is kept is not itself secret, and redacting paths would blind the evidence.
  for (std::string_view where : {"file", "files", "path", "dir", "url", "uri"}) {
    if (EndsWith(n, where)) return false;
  }
  for (std::string_view word :
       {"token", "secret", "password", "passwd", "passphrase", "credential", "apikey", "api_key",
        "api-key", "private_key", "private-key", "authorization", "cookie"}) {
    if (n.find(word) != std::string::npos) return true;
  }
  return false;
}

std::vector<std::string> SecretParts(const std::string& value) {
  std::vector<std::string> out{value};
  // "Bearer abc", "Basic abc", "token abc": the scheme is one word of letters.
  size_t space = value.find(' ');
  if (space != std::string::npos && space > 0 &&
      std::all_of(value.begin(), value.begin() + static_cast<std::ptrdiff_t>(space),
                  [](char c) { return std::isalpha(static_cast<unsigned char>(c)); })) {
    std::string rest = value.substr(space + 1);
    rest.erase(0, rest.find_first_not_of(' '));
    if (!rest.empty()) out.push_back(rest);
  }
  return out;
}

std::string UrlPassword(std::string_view url) {
  size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return "";
  std::string_view rest = url.substr(scheme + 3);
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  size_t at = authority.rfind('@');
  if (at == std::string_view::npos) return "";
  std::string_view userinfo = authority.substr(0, at);
  size_t colon = userinfo.find(':');
  if (colon == std::string_view::npos) return "";
  return std::string(userinfo.substr(colon + 1));
}

}  // namespace guardian
