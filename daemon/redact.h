#pragma once
// Secret redaction. The values guardian.yaml marks as secret (referenced with `secret_file` or
// `secret_env`, or written literally in a field known to hold one: an Authorization header, an
// env entry named *TOKEN*, ...) are replaced by "[redacted]" in the text guardiand writes for
// people to read: log lines, API answers, status.json and the store. One filter over outgoing
// text, instead of care at each place a value might be echoed, also catches a secret that a
// playbook logs or a remote server quotes back in an error page.
//
// Thread: any. The set only grows over the life of the process: a secret a reload rotated away
// may still be in flight (the params of a running playbook), so it stays redacted.

#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace guardian {

inline constexpr std::string_view kRedacted = "[redacted]";
// Shorter values are not redacted: replacing every "abc" in every line would mangle unrelated
// text (ids, JSON). The config loader warns about such a secret.
inline constexpr size_t kMinRedactedLength = 6;

class Redactor {
 public:
  // The one set guardiand filters its output through.
  static Redactor& Global();

  // Adds secret values, each also in its JSON-escaped form (API answers and status.json carry
  // that one). Values shorter than kMinRedactedLength are ignored.
  void Add(const std::vector<std::string>& secrets);
  // `text` with every known secret replaced; nullopt when it holds none, so callers that pass
  // large texts through copy only what needs it.
  std::optional<std::string> Redacted(std::string_view text) const;
  std::string Redact(std::string_view text) const;
  bool empty() const;

 private:
  mutable std::mutex mu_;
  // Replaced longest first, so a secret holding another is replaced whole.
  std::shared_ptr<const std::vector<std::string>> forms_ =
      std::make_shared<const std::vector<std::string>>();
};

// Whether a field's name says it holds a secret: it mentions a token, secret, password,
// passphrase, credential, API key, private key, authorization or cookie, and does not name a
// file, path, folder or URL where the secret is kept (TOKEN_FILE, token_url).
bool IsSecretName(std::string_view name);

// The parts of a secret value worth redacting: the value, and for "Scheme credentials" (an
// Authorization header's "Bearer X") the credentials alone, which a playbook may log without
// the scheme.
std::vector<std::string> SecretParts(const std::string& value);

// The password of an http(s) URL with user info ("https://user:pw@host/"), or "".
std::string UrlPassword(std::string_view url);

}  // namespace guardian
