// Redactor: known secrets are replaced wherever they occur in outgoing text, in their raw and
// their JSON-escaped forms; text without one is left alone (and not copied).
#include "daemon/redact.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

namespace guardian {
namespace {

TEST_CASE("secrets are replaced in raw and JSON-escaped text, longest first") {
  Redactor r;
  CHECK(r.empty());
  CHECK_FALSE(r.Redacted("nothing to hide").has_value());
  r.Add({"s3cr3t-value", "s3cr3t-value-longer", "quo\"te-secret"});
  CHECK(r.Redact("a s3cr3t-value and s3cr3t-value again") == "a [redacted] and [redacted] again");
  // The longer one is replaced whole, not as the shorter one plus a tail.
  CHECK(r.Redact("x s3cr3t-value-longer y") == "x [redacted] y");
  CHECK(r.Redact("raw quo\"te-secret") == "raw [redacted]");
  std::string json = nlohmann::json({{"evidence", "got quo\"te-secret"}}).dump();
  CHECK(json.find("quo\\\"te-secret") != std::string::npos);
  CHECK(r.Redact(json) == "{\"evidence\":\"got [redacted]\"}");
  CHECK_FALSE(r.Redacted("s3cr3t-valu").has_value());
  // Too short to replace without mangling everything else.
  r.Add({"abc"});
  CHECK(r.Redact("abc") == "abc");
}

TEST_CASE("names that say a value is secret; the credential of a scheme; a URL's password") {
  for (const char* name :
       {"API_TOKEN", "Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key", "DB_PASSWORD",
        "client_secret", "GITHUB_TOKEN", "private_key"}) {
    CHECK_MESSAGE(IsSecretName(name), name);
  }
  for (const char* name :
       {"PATH", "LANG", "X-Trace", "TOKEN_FILE", "token_url", "key_files", "SECRET_DIR", "user"}) {
    CHECK_MESSAGE(!IsSecretName(name), name);
  }
  CHECK(SecretParts("Bearer abc.def") == std::vector<std::string>{"Bearer abc.def", "abc.def"});
  CHECK(SecretParts("no-scheme-here") == std::vector<std::string>{"no-scheme-here"});
  CHECK(SecretParts("two words-9 here") ==
        std::vector<std::string>{"two words-9 here", "words-9 here"});
  CHECK(UrlPassword("https://user:pw-123@host:8080/x?a=b") == "pw-123");
  CHECK(UrlPassword("https://user@host/") == "");
  CHECK(UrlPassword("https://host/path@x:y") == "");
  CHECK(UrlPassword("/not/a/url") == "");
}

}  // namespace
}  // namespace guardian
