// guardian.credentials: OAuth2 tokens for the service an invalid_credentials check watches,
// handled in C++ so that no secret ever enters Lua. The check's params name the token file,
// the token endpoint, the key files and the authenticated probe URL; a playbook only says
// what to do (refresh, grant with key N, probe) and gets client ids, expiries, HTTP statuses
// and OAuth2 error codes back, never a token or a secret.
#include "daemon/clock.h"
#include "daemon/oauth.h"
#include "daemon/work.h"
#include "plugins/host_api.h"
#include "plugins/playbook_run.h"

namespace guardian {
namespace {

struct Setup {
  std::string token_file, token_url, probe_url;
  std::vector<std::string> key_files;
  int64_t timeout_ms = 2000;
};

Setup SetupOf(lua_State* L, const char* call) {
  const Params& p = PlaybookRun::From(L)->check().params;
  Setup s;
  s.token_file = ParamString(p, "token_file");
  s.token_url = ParamString(p, "token_url");
  s.probe_url = ParamString(p, "probe_url");
  s.key_files = ParamList(p, "key_files");
  s.timeout_ms = ParamInt(p, "timeout_ms", 2000);
  if (s.token_file.empty() || s.token_url.empty() || s.probe_url.empty() || s.key_files.empty())
    luaL_error(L, "%s: the check declares no token_file, token_url, probe_url and key_files", call);
  return s;
}

std::string ExpiryText(const TokenFile& t) {
  if (t.expires_at_ms <= 0) return "no expiry given";
  return "expires in " + std::to_string((t.expires_at_ms - SystemClock::Get()->WallMs()) / 1000) +
         " s";
}

// What a grant needs, read on the pool.
struct Grant {
  TokenFile current;
  Status current_status;
  std::vector<ClientKey> keys;
  std::vector<Status> key_status;
  // Set on the loop:
  bool cancelled = false;
  uint64_t http_id = 0;
  TokenFile issued;
};

void LoadAll(const Setup& s, Grant* g) {
  g->current_status = LoadTokenFile(s.token_file, &g->current);
  for (const auto& path : s.key_files) {
    ClientKey k;
    g->key_status.push_back(LoadClientKey(path, &k));
    g->keys.push_back(k);
  }
}

void PushNilMessage(lua_State* L, const std::string& message) {
  lua_pushnil(L);
  lua_pushstring(L, message.c_str());
}

// A failed grant's third value, so a playbook can tell "nobody answered" (try again when the
// endpoint is back) from "the credentials were refused" (switch keys, degrade, alert).
int PushFailure(lua_State* L, const std::string& message, const char* kind) {
  PushNilMessage(L, message);
  lua_pushstring(L, kind);
  return 3;
}

// Runs a token request built by `make` (nullopt with a reason: nothing to send) and saves what
// it issues. Resumes with true, message or nil, message, kind ("no_answer", "refused", "error").
using MakeCall =
    std::function<bool(const Setup&, Grant&, HttpCall*, std::string* client, std::string* why)>;
int RunGrant(lua_State* L, const char* call, const std::string& what, MakeCall make) {
  PlaybookRun* run = PlaybookRun::From(L);
  Setup setup = SetupOf(L, call);
  HttpClient* http = run->services().http;
  if (!http) return luaL_error(L, "%s: no HTTP client in this daemon", call);
  if (run->RecordAction(L, call, lua_gettop(L)))
    return run->AwaitNothing(L, call, [what](lua_State* L) {
      lua_pushboolean(L, 1);
      lua_pushstring(L, ("dry run: would " + what).c_str());
      return 2;
    });
  return run->Await(L, call, [run, http, setup, what, make](PlaybookRun::Resume resume) {
    auto g = std::make_shared<Grant>();
    QueueWork(
        run->loop(), [setup, g] { LoadAll(setup, g.get()); },
        [http, setup, what, make, g, resume, loop = run->loop()] {
          if (g->cancelled) return;
          HttpCall req;
          std::string client, why;
          if (!make(setup, *g, &req, &client, &why))
            return resume([why](lua_State* L) { return PushFailure(L, why, "error"); });
          g->http_id = http->Start(req, [g, setup, what, client, resume, loop](HttpResult a) {
            g->http_id = 0;
            Status s = ParseTokenAnswer(a, client, SystemClock::Get()->WallMs(), &g->issued);
            if (!s.ok()) {
              // Busy or failing (5xx, 429) could not judge the credentials either.
              bool unavailable = !a.ok() || a.code >= 500 || a.code == 429;
              const char* kind = unavailable                                   ? "no_answer"
                                 : s.code() == Status::Code::kPermissionDenied ? "refused"
                                                                               : "error";
              return resume([what, s, kind](lua_State* L) {
                return PushFailure(L, what + ": " + s.message(), kind);
              });
            }
            // Saved even if the phase ended meanwhile: a refresh has spent the old refresh token.
            auto saved = std::make_shared<Status>();
            QueueWork(
                loop, [g, setup, saved] { *saved = SaveTokenFile(setup.token_file, g->issued); },
                [g, what, client, saved, resume] {
                  std::string msg =
                      what + ": client '" + client + "' has a new token, " + ExpiryText(g->issued);
                  resume([saved, msg](lua_State* L) {
                    if (!saved->ok())
                      return PushFailure(L, "got a token but cannot save it: " + saved->message(),
                                         "error");
                    lua_pushboolean(L, 1);
                    lua_pushstring(L, msg.c_str());
                    return 2;
                  });
                });
          });
        });
    return std::function<void()>([g, http] {
      g->cancelled = true;
      if (g->http_id != 0) http->Cancel(g->http_id);
    });
  });
}

// guardian.credentials.refresh() -> true, message | nil, message
//   One refresh_token grant with the token file's refresh token, authenticated with the key
//   file of the client the token was issued to. A refused refresh is not retried here.
int Refresh(lua_State* L) {
  return RunGrant(
      L, "guardian.credentials.refresh", "refresh",
      [](const Setup& s, Grant& g, HttpCall* req, std::string* client, std::string* why) {
        if (!g.current_status.ok()) {
          *why = "refresh: no usable token to refresh (" + g.current_status.message() + ")";
          return false;
        }
        if (g.current.refresh_token.empty()) {
          *why = "refresh: the token has no refresh token";
          return false;
        }
        for (size_t i = 0; i < g.keys.size(); ++i) {
          if (!g.key_status[i].ok() || g.keys[i].client_id != g.current.client_id) continue;
          *client = g.keys[i].client_id;
          *req = RefreshCall(s.token_url, g.current, g.keys[i], s.timeout_ms);
          return true;
        }
        *why = "refresh: no readable key file for client '" + g.current.client_id + "'";
        return false;
      });
}

// guardian.credentials.grant(n) -> true, message | nil, message
//   A client_credentials grant with key_files[n] (1 = primary, 2 = backup, ...).
int GrantWith(lua_State* L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  Setup setup = SetupOf(L, "guardian.credentials.grant");
  if (n < 1 || static_cast<size_t>(n) > setup.key_files.size())
    return luaL_error(L, "guardian.credentials.grant: key %d is not one of the %d key_files",
                      static_cast<int>(n), static_cast<int>(setup.key_files.size()));
  size_t i = static_cast<size_t>(n - 1);
  return RunGrant(
      L, "guardian.credentials.grant", "grant with key " + std::to_string(n),
      [i](const Setup& s, Grant& g, HttpCall* req, std::string* client, std::string* why) {
        if (!g.key_status[i].ok()) {
          *why = "grant with key " + std::to_string(i + 1) + ": " + g.key_status[i].message();
          return false;
        }
        *client = g.keys[i].client_id;
        *req = ClientCredentialsCall(s.token_url, g.keys[i], s.timeout_ms);
        return true;
      });
}

// guardian.credentials.token() -> {present, client_id, expires_at, expires_in_ms, has_refresh,
//   problem}: what the token file holds, without the token.
// guardian.credentials.keys() -> {{file, client_id, problem}, ...} in key_files order.
int Describe(lua_State* L, bool keys) {
  PlaybookRun* run = PlaybookRun::From(L);
  Setup setup = SetupOf(L, keys ? "guardian.credentials.keys" : "guardian.credentials.token");
  return run->Await(L, "guardian.credentials", [run, setup, keys](PlaybookRun::Resume resume) {
    auto g = std::make_shared<Grant>();
    QueueWork(
        run->loop(), [setup, g] { LoadAll(setup, g.get()); },
        [g, setup, keys, resume] {
          nlohmann::json j;
          if (keys) {
            j = nlohmann::json::array();
            for (size_t i = 0; i < g->keys.size(); ++i) {
              nlohmann::json k = {{"file", setup.key_files[i]}};
              if (g->key_status[i].ok())
                k["client_id"] = g->keys[i].client_id;
              else
                k["problem"] = g->key_status[i].message();
              j.push_back(k);
            }
          } else if (!g->current_status.ok()) {
            j = {{"present", false}, {"problem", g->current_status.message()}};
          } else {
            const TokenFile& t = g->current;
            j = {{"present", true},
                 {"client_id", t.client_id},
                 {"has_refresh", !t.refresh_token.empty()}};
            if (t.expires_at_ms > 0) {
              j["expires_at"] = t.expires_at_ms;
              j["expires_in_ms"] = t.expires_at_ms - SystemClock::Get()->WallMs();
            }
          }
          resume([j](lua_State* L) {
            PushJson(L, j);
            return 1;
          });
        });
    return std::function<void()>();
  });
}
int Token(lua_State* L) { return Describe(L, false); }
int Keys(lua_State* L) { return Describe(L, true); }

// guardian.credentials.probe() -> {ok, status, ms, error_kind}: probe_url called with the token
//   file's token (ok false when there is no token or no answer).
int Probe(lua_State* L) {
  PlaybookRun* run = PlaybookRun::From(L);
  Setup setup = SetupOf(L, "guardian.credentials.probe");
  HttpClient* http = run->services().http;
  if (!http) return luaL_error(L, "guardian.credentials.probe: no HTTP client in this daemon");
  return run->Await(
      L, "guardian.credentials.probe", [run, http, setup](PlaybookRun::Resume resume) {
        auto g = std::make_shared<Grant>();
        auto reply = [resume](nlohmann::json j) {
          resume([j](lua_State* L) {
            PushJson(L, j);
            return 1;
          });
        };
        QueueWork(
            run->loop(), [setup, g] { LoadAll(setup, g.get()); },
            [g, http, setup, reply] {
              if (g->cancelled) return;
              if (!g->current_status.ok())
                return reply({{"ok", false}, {"error_kind", "no_token"}, {"status", 0}, {"ms", 0}});
              HttpCall req = BearerCall(setup.probe_url, g->current.access_token, setup.timeout_ms);
              g->http_id = http->Start(req, [g, reply](HttpResult a) {
                g->http_id = 0;
                nlohmann::json j = {{"ok", a.ok()}, {"status", a.code}, {"ms", a.total_ms}};
                if (!a.ok()) j["error_kind"] = a.error_kind;
                reply(j);
              });
            });
        return std::function<void()>([g, http] {
          g->cancelled = true;
          if (g->http_id != 0) http->Cancel(g->http_id);
        });
      });
}

void Install(lua_State* L) {
  static const luaL_Reg fns[] = {{"refresh", Refresh}, {"grant", GrantWith}, {"token", Token},
                                 {"keys", Keys},       {"probe", Probe},     {nullptr, nullptr}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "credentials");
}

}  // namespace

GUARDIAN_HOST_MODULE(credentials, "credentials", Install);

}  // namespace guardian
