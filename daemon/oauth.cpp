#include "daemon/oauth.h"

#include <nlohmann/json.hpp>

#include "daemon/file_util.h"

namespace guardian {
namespace {

constexpr size_t kMaxFileBytes = 64 * 1024;

// A string field of `doc`: "" when absent, InvalidArgument naming `field` when not a string.
Status StringField(const nlohmann::json& doc, const char* field, bool required, std::string* out) {
  out->clear();
  auto it = doc.find(field);
  if (it == doc.end() || it->is_null()) {
    if (required) return Status::InvalidArgument(std::string("'") + field + "' is missing");
    return Status::OK();
  }
  if (!it->is_string())
    return Status::InvalidArgument(std::string("'") + field + "' must be a string");
  *out = it->get<std::string>();
  if (required && out->empty())
    return Status::InvalidArgument(std::string("'") + field + "' is empty");
  return Status::OK();
}

Status IntField(const nlohmann::json& doc, const char* field, int64_t* out) {
  *out = 0;
  auto it = doc.find(field);
  if (it == doc.end() || it->is_null()) return Status::OK();
  if (!it->is_number_integer())
    return Status::InvalidArgument(std::string("'") + field + "' must be an integer");
  *out = it->get<int64_t>();
  return Status::OK();
}

// Parses `text` as a JSON object; the parser's message never quotes the text (it may hold a
// secret), only where it failed.
Status ParseObject(const std::string& text, nlohmann::json* doc) {
  *doc = nlohmann::json::parse(text, nullptr, false);
  if (doc->is_discarded()) return Status::InvalidArgument("not valid JSON");
  if (!doc->is_object()) return Status::InvalidArgument("not a JSON object");
  return Status::OK();
}

Status InFile(const std::string& path, Status s) {
  if (s.ok()) return s;
  return Status::InvalidArgument(path + ": " + s.message());
}

}  // namespace

Status ParseClientKey(const std::string& text, ClientKey* out) {
  nlohmann::json doc;
  Status s = ParseObject(text, &doc);
  if (!s.ok()) return s;
  s = StringField(doc, "client_id", true, &out->client_id);
  if (!s.ok()) return s;
  return StringField(doc, "client_secret", true, &out->secret);
}

Status LoadClientKey(const std::string& path, ClientKey* out) {
  std::string text;
  Status s = ReadRegularFile(path, kMaxFileBytes, &text);
  if (!s.ok()) return s;
  return InFile(path, ParseClientKey(text, out));
}

Status ParseTokenFile(const std::string& text, TokenFile* out) {
  nlohmann::json doc;
  Status s = ParseObject(text, &doc);
  if (!s.ok()) return s;
  if (!(s = StringField(doc, "access_token", true, &out->access_token)).ok()) return s;
  if (!(s = StringField(doc, "refresh_token", false, &out->refresh_token)).ok()) return s;
  if (!(s = StringField(doc, "client_id", false, &out->client_id)).ok()) return s;
  if (!(s = IntField(doc, "expires_at", &out->expires_at_ms)).ok()) return s;
  return IntField(doc, "obtained_at", &out->obtained_at_ms);
}

Status LoadTokenFile(const std::string& path, TokenFile* out) {
  std::string text;
  Status s = ReadRegularFile(path, kMaxFileBytes, &text);
  if (!s.ok()) return s;
  return InFile(path, ParseTokenFile(text, out));
}

std::string SerializeTokenFile(const TokenFile& token) {
  nlohmann::json doc = {{"access_token", token.access_token},
                        {"token_type", "Bearer"},
                        {"client_id", token.client_id},
                        {"obtained_at", token.obtained_at_ms}};
  if (!token.refresh_token.empty()) doc["refresh_token"] = token.refresh_token;
  if (token.expires_at_ms > 0) doc["expires_at"] = token.expires_at_ms;
  return doc.dump(2) + "\n";
}

Status SaveTokenFile(const std::string& path, const TokenFile& token) {
  return WriteFileAtomic(path, SerializeTokenFile(token), 0600);
}

std::string FormEncode(const std::vector<std::pair<std::string, std::string>>& fields) {
  // Percent-encoding as curl_easy_escape does it: all but RFC 3986's unreserved characters.
  // Done here so that a token request to a plain http:// endpoint needs no libcurl.
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const auto& [name, value] : fields) {
    if (!out.empty()) out += '&';
    for (const std::string* part : {&name, &value}) {
      for (unsigned char c : *part) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
          out += static_cast<char>(c);
        } else {
          out += '%';
          out += kHex[c >> 4];
          out += kHex[c & 15];
        }
      }
      if (part == &name) out += '=';
    }
  }
  return out;
}

namespace {
HttpCall TokenCall(const std::string& token_url, std::string body, int64_t timeout_ms) {
  HttpCall call;
  call.method = "POST";
  call.url = token_url;
  call.headers = {"Content-Type: application/x-www-form-urlencoded", "Accept: application/json"};
  call.body = std::move(body);
  call.timeout_ms = timeout_ms;
  call.max_body_bytes = kMaxFileBytes;
  return call;
}
}  // namespace

HttpCall ClientCredentialsCall(const std::string& token_url, const ClientKey& key,
                               int64_t timeout_ms) {
  return TokenCall(token_url,
                   FormEncode({{"grant_type", "client_credentials"},
                               {"client_id", key.client_id},
                               {"client_secret", key.secret}}),
                   timeout_ms);
}

HttpCall RefreshCall(const std::string& token_url, const TokenFile& token, const ClientKey& key,
                     int64_t timeout_ms) {
  return TokenCall(token_url,
                   FormEncode({{"grant_type", "refresh_token"},
                               {"refresh_token", token.refresh_token},
                               {"client_id", key.client_id},
                               {"client_secret", key.secret}}),
                   timeout_ms);
}

HttpCall BearerCall(const std::string& url, const std::string& access_token, int64_t timeout_ms) {
  HttpCall call;
  call.url = url;
  call.headers = {"Authorization: Bearer " + access_token};
  call.timeout_ms = timeout_ms;
  return call;
}

Status ParseTokenAnswer(const HttpResult& answer, const std::string& client_id, int64_t now_ms,
                        TokenFile* out) {
  if (!answer.ok()) return Status::IOError("no answer: " + answer.error_kind);
  nlohmann::json doc;
  Status parsed = ParseObject(answer.body, &doc);
  std::string code = std::to_string(answer.code);
  if (answer.code != 200) {
    // RFC 6749 5.2: {"error": "invalid_grant", ...}. Only the code is kept: a description may
    // echo what was sent.
    std::string error;
    if (parsed.ok() && StringField(doc, "error", false, &error).ok() && !error.empty() &&
        error.size() <= 64 &&
        error.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos)
      code += " " + error;
    if (answer.code == 400 || answer.code == 401 || answer.code == 403)
      return Status::PermissionDenied(code);
    return Status::IOError(code);
  }
  if (!parsed.ok()) return Status::IOError("200 but the answer is " + parsed.message());
  TokenFile t;
  Status s = StringField(doc, "access_token", true, &t.access_token);
  if (s.ok()) s = StringField(doc, "refresh_token", false, &t.refresh_token);
  int64_t expires_in = 0;
  if (s.ok()) s = IntField(doc, "expires_in", &expires_in);
  if (!s.ok()) return Status::IOError("200 but " + s.message());
  std::string type;
  if (StringField(doc, "token_type", false, &type).ok() && !type.empty() && type != "Bearer" &&
      type != "bearer")
    return Status::IOError("200 but token_type is not Bearer");
  t.client_id = client_id;
  t.obtained_at_ms = now_ms;
  t.expires_at_ms = expires_in > 0 ? now_ms + expires_in * 1000 : 0;
  *out = std::move(t);
  return Status::OK();
}

}  // namespace guardian
