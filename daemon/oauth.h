#pragma once
// OAuth2 client pieces for the invalid_credentials mode: the client keys a service may use
// (key files), the token file Guardian keeps fresh for it, and the token endpoint's requests and
// answers (RFC 6749 4.4 client_credentials, 6 refresh_token, 5.2 errors).
//
// Secrets (client secrets, access and refresh tokens) live only in these structs and in the
// files. No function here puts one into a Status message, and callers must not either: error
// messages name files, fields, HTTP statuses and OAuth2 error codes, never values.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "daemon/http_client.h"
#include "daemon/status.h"

namespace guardian {

// A key file: JSON {"client_id": "...", "client_secret": "..."}.
struct ClientKey {
  std::string client_id;
  std::string secret;
};

// The token file the service reads its bearer token from (it only needs access_token).
struct TokenFile {
  std::string access_token;
  std::string refresh_token;  // empty: none was issued
  std::string client_id;      // the key the token was issued to
  int64_t expires_at_ms = 0;  // wall ms; 0: the endpoint gave no expiry
  int64_t obtained_at_ms = 0;
};

Status ParseClientKey(const std::string& text, ClientKey* out);
// NotFound when the file is missing; errors name the file and the field.
Status LoadClientKey(const std::string& path, ClientKey* out);

Status ParseTokenFile(const std::string& text, TokenFile* out);
Status LoadTokenFile(const std::string& path, TokenFile* out);
std::string SerializeTokenFile(const TokenFile& token);
// Atomic (temp file, fsync, rename), mode 0600.
Status SaveTokenFile(const std::string& path, const TokenFile& token);

// application/x-www-form-urlencoded
std::string FormEncode(const std::vector<std::pair<std::string, std::string>>& fields);

// POST requests to the token endpoint (client_secret_post authentication).
HttpCall ClientCredentialsCall(const std::string& token_url, const ClientKey& key,
                               int64_t timeout_ms);
HttpCall RefreshCall(const std::string& token_url, const TokenFile& token, const ClientKey& key,
                     int64_t timeout_ms);
// GET `url` with the token as its bearer.
HttpCall BearerCall(const std::string& url, const std::string& access_token, int64_t timeout_ms);

// The token endpoint's answer: on 200 with an access_token, the new token (issued to
// `client_id`, expires_in counted from now_ms). Else an error such as
// "400 invalid_grant" or "503 temporarily_unavailable" (PermissionDenied for 400/401/403, the
// credentials' fault; IOError otherwise, the endpoint's).
Status ParseTokenAnswer(const HttpResult& answer, const std::string& client_id, int64_t now_ms,
                        TokenFile* out);

}  // namespace guardian
