// The OAuth2 client pieces: key and token files, form bodies, and the token endpoint's answers,
// with no secret ever in an error message.
#include "daemon/oauth.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace guardian {

TEST_CASE("key files: both fields required, errors name the field, never a value") {
  ClientKey k;
  CHECK(ParseClientKey(R"({"client_id": "app", "client_secret": "s3cr3t-value"})", &k).ok());
  CHECK(k.client_id == "app");
  CHECK(k.secret == "s3cr3t-value");
  CHECK(ParseClientKey(R"({"client_id": "app"})", &k).message() == "'client_secret' is missing");
  CHECK(ParseClientKey(R"({"client_id": "app", "client_secret": 7})", &k).message() ==
        "'client_secret' must be a string");
  CHECK(ParseClientKey(R"({"client_id": "", "client_secret": "x"})", &k).message() ==
        "'client_id' is empty");
  Status bad = ParseClientKey(R"({"client_secret": "s3cr3t-value", )", &k);
  CHECK(bad.message() == "not valid JSON");
}

TEST_CASE("token files round-trip, are written 0600, and a missing one is NotFound") {
  std::string dir =
      std::filesystem::temp_directory_path() / ("oauth_test." + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string path = dir + "/token.json";
  TokenFile t;
  CHECK(LoadTokenFile(path, &t).code() == Status::Code::kNotFound);
  t.access_token = "acc";
  t.refresh_token = "ref";
  t.client_id = "app";
  t.expires_at_ms = 1000;
  t.obtained_at_ms = 10;
  REQUIRE(SaveTokenFile(path, t).ok());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  TokenFile back;
  REQUIRE(LoadTokenFile(path, &back).ok());
  CHECK(back.access_token == "acc");
  CHECK(back.refresh_token == "ref");
  CHECK(back.client_id == "app");
  CHECK(back.expires_at_ms == 1000);
  CHECK(back.obtained_at_ms == 10);
  // A token file an operator wrote by hand needs only access_token.
  CHECK(ParseTokenFile(R"({"access_token": "x"})", &back).ok());
  CHECK(back.refresh_token.empty());
  CHECK(back.expires_at_ms == 0);
  CHECK(ParseTokenFile(R"({"access_token": "x", "expires_at": "soon"})", &back).message() ==
        "'expires_at' must be an integer");
  Status s = LoadTokenFile(dir, &back);  // a folder is not a token file
  CHECK_FALSE(s.ok());
  std::filesystem::remove_all(dir);
}

TEST_CASE("form bodies percent-encode every reserved character") {
  CHECK(FormEncode({{"grant_type", "refresh_token"}, {"refresh_token", "a+b/c=d&e f"}}) ==
        "grant_type=refresh_token&refresh_token=a%2Bb%2Fc%3Dd%26e%20f");
  CHECK(FormEncode({{"k", "Az09-._~"}, {"\xc3\xa9", "%\n"}}) == "k=Az09-._~&%C3%A9=%25%0A");
  HttpCall c = ClientCredentialsCall("http://127.0.0.1:1/oauth/token", {"app", "p&q"}, 2000);
  CHECK(c.method == "POST");
  CHECK(c.body == "grant_type=client_credentials&client_id=app&client_secret=p%26q");
  CHECK(c.timeout_ms == 2000);
  TokenFile t;
  t.refresh_token = "r1";
  CHECK(RefreshCall("u", t, {"app", "s"}, 1).body ==
        "grant_type=refresh_token&refresh_token=r1&client_id=app&client_secret=s");
  CHECK(BearerCall("u", "tok", 1).headers == std::vector<std::string>{"Authorization: Bearer tok"});
}

TEST_CASE("token answers: a new token, a refusal by OAuth2 error code, or the endpoint's failure") {
  HttpResult r;
  r.code = 200;
  r.body = R"({"access_token": "A1", "token_type": "Bearer", "expires_in": 60,
               "refresh_token": "R1"})";
  TokenFile t;
  REQUIRE(ParseTokenAnswer(r, "app", 1000, &t).ok());
  CHECK(t.access_token == "A1");
  CHECK(t.refresh_token == "R1");
  CHECK(t.client_id == "app");
  CHECK(t.expires_at_ms == 61000);
  CHECK(t.obtained_at_ms == 1000);

  r.code = 400;
  r.body = R"({"error": "invalid_grant", "error_description": "token R0 is spent"})";
  Status s = ParseTokenAnswer(r, "app", 0, &t);
  CHECK(s.code() == Status::Code::kPermissionDenied);
  CHECK(s.message() == "400 invalid_grant");  // the description may quote what was sent

  r.code = 401;
  r.body = R"({"error": "invalid_client"})";
  CHECK(ParseTokenAnswer(r, "app", 0, &t).message() == "401 invalid_client");
  r.code = 503;
  r.body = R"({"error": "temporarily_unavailable"})";
  s = ParseTokenAnswer(r, "app", 0, &t);
  CHECK(s.code() == Status::Code::kIOError);
  CHECK(s.message() == "503 temporarily_unavailable");
  r.code = 400;
  r.body = R"({"error": "Secret X rejected"})";  // not an error code: dropped
  CHECK(ParseTokenAnswer(r, "app", 0, &t).message() == "400");

  r.code = 200;
  r.body = R"({"token_type": "Bearer"})";
  CHECK(ParseTokenAnswer(r, "app", 0, &t).message() == "200 but 'access_token' is missing");
  r.body = R"({"access_token": "A", "token_type": "mac"})";
  CHECK(ParseTokenAnswer(r, "app", 0, &t).message() == "200 but token_type is not Bearer");
  r.error_kind = "refused";
  CHECK(ParseTokenAnswer(r, "app", 0, &t).message() == "no answer: refused");
}

}  // namespace guardian
