// guardian.http: HTTP requests from a playbook, on the loop (HttpClient), only to the endpoints
// its check declares: a URL is allowed when it is, or lies under, the value of one of the
// check's params that is an http:// or https:// URL (e.g. params.primary). A playbook cannot
// reach anything else.
#include <string_view>

#include "daemon/http_client.h"
#include "plugins/host_api.h"
#include "plugins/playbook_run.h"

namespace guardian {
namespace {

bool IsUrl(std::string_view v) { return v.rfind("http://", 0) == 0 || v.rfind("https://", 0) == 0; }

// `url` equals `base` or continues it at a path, query or fragment boundary, so that
// http://host:91 does not allow http://host:9101.
bool Under(const std::string& url, std::string base) {
  if (url.compare(0, base.size(), base) != 0) return false;
  if (url.size() == base.size() || base.back() == '/') return true;
  char next = url[base.size()];
  return next == '/' || next == '?' || next == '#';
}

bool Declared(const CheckConfig& check, const std::string& url) {
  for (const auto& [name, value] : check.params) {
    if (const auto* s = std::get_if<std::string>(&value)) {
      if (IsUrl(*s) && Under(url, *s)) return true;
    } else if (const auto* list = std::get_if<std::vector<std::string>>(&value)) {
      for (const auto& item : *list)
        if (IsUrl(item) && Under(url, item)) return true;
    }
  }
  return false;
}

// guardian.http.get(url [, {timeout_ms = 5000, headers = {"Name: value"}}])
// guardian.http.post(url, body [, opts])
//   -> {ok, status, body, json, ms, error_kind, error}: json is the decoded body when it is a
//   JSON object or array; ok false with error_kind "refused", "timeout",
//   "dns", "unreachable", "too_large" or "error" when no HTTP answer came. Raises when the URL
//   is not one the check declares.
int Request(lua_State* L, const char* call, const std::string& method) {
  PlaybookRun* run = PlaybookRun::From(L);
  HttpCall req;
  req.method = method;
  req.url = luaL_checkstring(L, 1);
  int opts = 2;
  if (method == "POST") {
    req.body = luaL_checkstring(L, 2);
    opts = 3;
  }
  if (!Declared(run->check(), req.url))
    return luaL_error(L, "%s: %s is not an endpoint this check declares in its params", call,
                      req.url.c_str());
  if (lua_istable(L, opts)) {
    lua_getfield(L, opts, "timeout_ms");
    if (!lua_isnil(L, -1)) req.timeout_ms = luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, opts, "headers");
    if (lua_istable(L, -1)) req.headers = CheckStringArray(L, lua_gettop(L), "headers");
    lua_pop(L, 1);
  }
  HttpClient* client = run->services().http;
  if (!client) return luaL_error(L, "%s: no HTTP client in this daemon", call);
  if (method != "GET" && run->RecordAction(L, call, opts - 1))
    return run->AwaitNothing(L, call, [](lua_State* L) {
      PushJson(L, {{"ok", true}, {"status", 200}, {"body", ""}, {"ms", 0}});
      return 1;
    });
  return run->Await(L, call, [client, req](PlaybookRun::Resume resume) {
    uint64_t id = client->Start(req, [resume](HttpResult r) {
      resume([r](lua_State* L) {
        nlohmann::json j = {
            {"ok", r.ok()}, {"status", r.code}, {"body", r.body}, {"ms", r.total_ms}};
        if (!r.ok()) {
          j["error_kind"] = r.error_kind;
          j["error"] = r.error;
        }
        // A JSON object or array answer, decoded: playbooks need not parse JSON in Lua.
        nlohmann::json doc = nlohmann::json::parse(r.body, nullptr, false);
        if (doc.is_object() || doc.is_array()) j["json"] = std::move(doc);
        PushJson(L, j);
        return 1;
      });
    });
    // A phase that ends (timeout, abort) cancels its request.
    return std::function<void()>([client, id] { client->Cancel(id); });
  });
}

int Get(lua_State* L) { return Request(L, "guardian.http.get", "GET"); }
int Post(lua_State* L) { return Request(L, "guardian.http.post", "POST"); }

void Install(lua_State* L) {
  static const luaL_Reg fns[] = {{"get", Get}, {"post", Post}, {nullptr, nullptr}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "http");
}

}  // namespace

GUARDIAN_HOST_MODULE(http, "http", Install);

}  // namespace guardian
