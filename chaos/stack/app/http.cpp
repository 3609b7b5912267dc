// Every endpoint of the demo app. Bodies are JSON both ways; request bodies are accumulated
// across MHD's upload calls and capped at 64 KiB.

#include "chaos/stack/app/http.h"

#include <unistd.h>

#include <cctype>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "chaos/stack/app/app.h"
#include "chaos/stack/app/boot.h"
#include "chaos/stack/app/model.h"
#include "chaos/stack/app/upstream.h"
#include "chaos/stack/app/util.h"

namespace demoapp {

namespace {

using nlohmann::json;

constexpr size_t kMaxBody = 64 * 1024;
constexpr int64_t kMaxAllocateMb = 4096;

struct Request {
  std::string body;
  bool too_large = false;
};

struct Reply {
  unsigned code = 200;
  json body;
};

// What a handler sees of its request.
struct Ctx {
  App& app;
  MHD_Connection* conn;
  const std::string& body;
  int64_t id;  // from /items/{id}
};

Reply Error(unsigned code, const std::string& message) { return {code, {{"error", message}}}; }

Reply DbFailure(const DbResult& r) {
  return {MHD_HTTP_SERVICE_UNAVAILABLE,
          {{"error", "database: " + r.Text()}, {"code", r.code}, {"message", r.message}}};
}

// Parses a JSON object body; false with a 400 reply when it is not one.
bool ParseObject(const std::string& body, json* out, Reply* error) {
  try {
    *out = json::parse(body);
  } catch (const json::exception& e) {
    *error = Error(MHD_HTTP_BAD_REQUEST, std::string("body is not valid JSON: ") + e.what());
    return false;
  }
  if (!out->is_object()) {
    *error = Error(MHD_HTTP_BAD_REQUEST, "body must be a JSON object");
    return false;
  }
  return true;
}

Reply Healthz(Ctx& ctx) {
  return {MHD_HTTP_OK, {{"status", "ok"}, {"state", ctx.app.status->state()}}};
}

Reply Readyz(Ctx& ctx) {
  std::string state = ctx.app.status->state();
  if (state != "ready") {
    std::string current = ctx.app.status->current_chunk();
    std::string reason = state == "booting" && !current.empty() ? "booting: " + current : state;
    return {MHD_HTTP_SERVICE_UNAVAILABLE, {{"ready", false}, {"reason", reason}}};
  }
  int64_t rows = 0;
  DbResult r = ctx.app.db->Count(&rows);
  if (!r.ok) {
    return {MHD_HTTP_SERVICE_UNAVAILABLE, {{"ready", false}, {"reason", "database: " + r.Text()}}};
  }
  return {MHD_HTTP_OK, {{"ready", true}}};
}

Reply GetStatus(Ctx& ctx) {
  json doc = ctx.app.status->ToJson();
  doc["memory"]["rss_bytes"] = RssBytes();
  return {MHD_HTTP_OK, doc};
}

Reply ListItems(Ctx& ctx) {
  // FNV-1a 64 over "id:body\n" of every row in id order (docs/demo-stack.md).
  uint64_t hash = 14695981039346656037ull;
  int64_t count = 0;
  DbResult r = ctx.app.db->ForEach([&](const Item& item) {
    std::string line = std::to_string(item.id) + ":" + item.body + "\n";
    for (unsigned char c : line) {
      hash ^= c;
      hash *= 1099511628211ull;
    }
    ++count;
  });
  if (!r.ok) return DbFailure(r);
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  return {MHD_HTTP_OK, {{"count", count}, {"checksum", hex}}};
}

Reply GetItem(Ctx& ctx) {
  Item item;
  bool found = false;
  DbResult r = ctx.app.db->Get(ctx.id, &item, &found);
  if (!r.ok) return DbFailure(r);
  if (!found) return Error(MHD_HTTP_NOT_FOUND, "no item " + std::to_string(ctx.id));
  return {MHD_HTTP_OK, {{"id", item.id}, {"body", item.body}, {"created_at", item.created_at}}};
}

Reply PostItem(Ctx& ctx) {
  json doc;
  Reply error;
  if (!ParseObject(ctx.body, &doc, &error)) return error;
  if (!doc.contains("body") || !doc["body"].is_string()) {
    return Error(MHD_HTTP_BAD_REQUEST, "body: expected a string");
  }
  std::string body = doc["body"].get<std::string>();
  int64_t id = 0;
  DbResult r = ctx.app.db->Insert(body, &id);
  if (!r.ok) return DbFailure(r);
  ctx.app.index->Add(id, body);
  ctx.app.log->Info("POST /items: created item " + std::to_string(id));
  return {MHD_HTTP_CREATED, {{"id", id}}};
}

Reply Search(Ctx& ctx) {
  if (ctx.app.flags->Get().degraded("search") || ctx.app.status->chunk_skipped("search_index")) {
    return Error(MHD_HTTP_SERVICE_UNAVAILABLE, "feature degraded: search");
  }
  const char* q = MHD_lookup_connection_value(ctx.conn, MHD_GET_ARGUMENT_KIND, "q");
  if (!q || !*q) return Error(MHD_HTTP_BAD_REQUEST, "missing query parameter q");
  std::vector<int64_t> ids;
  if (!ctx.app.index->Lookup(q, &ids)) {
    return Error(MHD_HTTP_SERVICE_UNAVAILABLE, "search index not built");
  }
  return {MHD_HTTP_OK, {{"q", q}, {"ids", ids}}};
}

// The upstream API's quote for an item, through the active upstream (flags).
Reply Quote(Ctx& ctx) {
  Flags flags = ctx.app.flags->Get();
  if (flags.offline_mode) return Error(MHD_HTTP_SERVICE_UNAVAILABLE, "offline mode: quotes paused");
  if (flags.degraded("quotes"))
    return Error(MHD_HTTP_SERVICE_UNAVAILABLE, "feature degraded: quotes");
  if (!ctx.app.upstreams->configured()) return Error(MHD_HTTP_NOT_FOUND, "no upstreams configured");
  const char* item = MHD_lookup_connection_value(ctx.conn, MHD_GET_ARGUMENT_KIND, "item");
  char* end = nullptr;
  long long n = item ? std::strtoll(item, &end, 10) : 0;
  if (!item || !*item || *end) return Error(MHD_HTTP_BAD_REQUEST, "item: expected an integer");
  UpstreamReply r = ctx.app.upstreams->Quote(n, flags);
  return {r.http_status, r.body};
}

// One non-streaming generation from the model server, for {"prompt": "..."}.
Reply Generate(Ctx& ctx) {
  Flags flags = ctx.app.flags->Get();
  if (flags.offline_mode) return Error(MHD_HTTP_SERVICE_UNAVAILABLE, "offline mode: model paused");
  if (flags.degraded("model"))
    return Error(MHD_HTTP_SERVICE_UNAVAILABLE, "feature degraded: model");
  if (!ctx.app.model->configured())
    return Error(MHD_HTTP_SERVICE_UNAVAILABLE, "no model server configured");
  json doc;
  Reply error;
  if (!ParseObject(ctx.body, &doc, &error)) return error;
  if (!doc.contains("prompt") || !doc["prompt"].is_string()) {
    return Error(MHD_HTTP_BAD_REQUEST, "prompt: expected a string");
  }
  ModelReply r = ctx.app.model->Generate(doc["prompt"].get<std::string>());
  return {r.http_status, r.body};
}

Reply ShedCaches(Ctx& ctx) {
  uint64_t freed = ctx.app.memory->ShedCaches();
  ctx.app.log->Info("control: shed caches, freed " + std::to_string(freed) + " bytes");
  return {MHD_HTTP_OK, {{"freed_bytes", freed}}};
}

json MemoryCounts(App& app) {
  return {{"cache_bytes", app.memory->cache_bytes()}, {"leak_bytes", app.memory->leak_bytes()}};
}

Reply Allocate(Ctx& ctx) {
  json doc;
  Reply error;
  if (!ParseObject(ctx.body, &doc, &error)) return error;
  if (!doc.contains("mb") || !doc["mb"].is_number_integer() || doc["mb"].get<int64_t>() < 0 ||
      doc["mb"].get<int64_t>() > kMaxAllocateMb) {
    return Error(MHD_HTTP_BAD_REQUEST,
                 "mb: expected an integer from 0 to " + std::to_string(kMaxAllocateMb));
  }
  std::string kind = "cache";
  if (doc.contains("kind")) {
    if (!doc["kind"].is_string() || (doc["kind"] != "cache" && doc["kind"] != "leak")) {
      return Error(MHD_HTTP_BAD_REQUEST, "kind: expected \"cache\" or \"leak\"");
    }
    kind = doc["kind"].get<std::string>();
  }
  int64_t mb = doc["mb"].get<int64_t>();
  bool over_cap = false;
  std::string problem = ctx.app.memory->Allocate(mb, kind == "leak", &over_cap);
  json counts = MemoryCounts(ctx.app);
  if (!problem.empty()) {
    ctx.app.log->Warn("control: allocate " + std::to_string(mb) + " MiB " + kind + ": " + problem);
    counts["error"] = problem;
    return {MHD_HTTP_INSUFFICIENT_STORAGE, counts};
  }
  ctx.app.log->Info("control: allocated " + std::to_string(mb) + " MiB " + kind);
  return {MHD_HTTP_OK, counts};
}

Reply Release(Ctx& ctx) {
  uint64_t freed = ctx.app.memory->ReleaseLeaks();
  ctx.app.log->Info("control: released leak blocks, " + std::to_string(freed) + " bytes");
  json counts = MemoryCounts(ctx.app);
  counts["freed_bytes"] = freed;
  return {MHD_HTTP_OK, counts};
}

Reply ReopenDb(Ctx& ctx) {
  ctx.app.log->Info("control: reopen-db");
  int64_t rows = 0;
  DbResult r = ReopenDatabase(ctx.app, &rows);
  if (!r.ok) {
    Reply reply = DbFailure(r);
    reply.body["ok"] = false;
    return reply;
  }
  return {MHD_HTTP_OK, {{"ok", true}, {"rows", rows}}};
}

Reply Snapshot(Ctx& ctx) {
  ctx.app.log->Info("control: snapshot");
  std::string path, error;
  int64_t items = 0;
  bool disk_full = false;
  if (!ctx.app.snapshots->Take(&path, &items, &error, &disk_full)) {
    return Error(disk_full ? MHD_HTTP_INSUFFICIENT_STORAGE : MHD_HTTP_SERVICE_UNAVAILABLE, error);
  }
  return {MHD_HTTP_OK, {{"path", path}, {"items", items}}};
}

struct Route {
  const char* method;
  const char* path;  // "/items/{id}" matches /items/ followed by digits
  Reply (*handler)(Ctx&);
};

const Route kRoutes[] = {
    {"GET", "/healthz", Healthz},
    {"GET", "/readyz", Readyz},
    {"GET", "/status", GetStatus},
    {"GET", "/items", ListItems},
    {"POST", "/items", PostItem},
    {"GET", "/items/{id}", GetItem},
    {"GET", "/search", Search},
    {"POST", "/control/shed-caches", ShedCaches},
    {"POST", "/control/allocate", Allocate},
    {"GET", "/quote", Quote},
    {"POST", "/generate", Generate},
    {"POST", "/control/release", Release},
    {"POST", "/control/reopen-db", ReopenDb},
    {"POST", "/control/snapshot", Snapshot},
};

bool Matches(const Route& route, const std::string& url, int64_t* id) {
  if (strcmp(route.path, "/items/{id}") != 0) return url == route.path;
  const std::string prefix = "/items/";
  if (url.size() <= prefix.size() || url.size() > prefix.size() + 18) return false;
  if (url.compare(0, prefix.size(), prefix) != 0) return false;
  for (size_t i = prefix.size(); i < url.size(); ++i) {
    if (!isdigit(static_cast<unsigned char>(url[i]))) return false;
  }
  *id = std::stoll(url.substr(prefix.size()));
  return true;
}

MHD_Result Send(MHD_Connection* conn, const Reply& reply, const std::string& allow) {
  // Replace, not throw, on bytes that are not UTF-8 (a corrupt row, a raw error message).
  std::string text = reply.body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  MHD_Response* resp =
      MHD_create_response_from_buffer(text.size(), text.data(), MHD_RESPMEM_MUST_COPY);
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  if (!allow.empty()) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow.c_str());
  MHD_Result ret = MHD_queue_response(conn, reply.code, resp);
  MHD_destroy_response(resp);
  return ret;
}

MHD_Result Handle(void* cls, MHD_Connection* conn, const char* url, const char* method,
                  const char* /*version*/, const char* upload_data, size_t* upload_data_size,
                  void** con_cls) {
  App& app = *static_cast<App*>(cls);
  auto* req = static_cast<Request*>(*con_cls);
  if (!req) {
    // First call: headers only. The body (if any) arrives in the calls that follow.
    *con_cls = new Request;
    return MHD_YES;
  }
  if (*upload_data_size > 0) {
    if (req->body.size() + *upload_data_size > kMaxBody) {
      req->too_large = true;
      req->body.clear();
    } else if (!req->too_large) {
      req->body.append(upload_data, *upload_data_size);
    }
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (req->too_large) {
    return Send(conn, Error(MHD_HTTP_CONTENT_TOO_LARGE, "request body over 64 KiB"), "");
  }
  std::string path = url;
  std::string allow;
  for (const Route& route : kRoutes) {
    int64_t id = 0;
    if (!Matches(route, path, &id)) continue;
    if (strcmp(route.method, method) != 0) {
      allow += (allow.empty() ? "" : ", ") + std::string(route.method);
      continue;
    }
    Ctx ctx{app, conn, req->body, id};
    Reply reply;
    try {
      reply = route.handler(ctx);
    } catch (const std::exception& e) {
      // A bug must cost one request, not the process.
      app.log->Error(std::string("http: ") + method + " " + path + ": " + e.what());
      reply = Error(MHD_HTTP_INTERNAL_SERVER_ERROR, e.what());
    }
    if (reply.code >= 500 && strcmp(method, "GET") != 0) {
      app.log->Warn(std::string(method) + " " + path + " -> " + std::to_string(reply.code));
    }
    return Send(conn, reply, "");
  }
  if (!allow.empty()) {
    return Send(conn, Error(MHD_HTTP_METHOD_NOT_ALLOWED, std::string(method) + " not allowed"),
                allow);
  }
  return Send(conn, Error(MHD_HTTP_NOT_FOUND, "no such endpoint: " + path), "");
}

void Completed(void* /*cls*/, MHD_Connection* /*conn*/, void** con_cls,
               MHD_RequestTerminationCode /*code*/) {
  delete static_cast<Request*>(*con_cls);
  *con_cls = nullptr;
}

void MhdLog(void* cls, const char* fmt, va_list ap) {
  char buf[512];
  vsnprintf(buf, sizeof buf, fmt, ap);
  size_t n = strlen(buf);
  while (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
  static_cast<App*>(cls)->log->Warn(std::string("http: ") + buf);
}

}  // namespace

bool HttpServer::Start(int listen_fd, int workers, std::string* error) {
  // The external logger must come first, or MHD logs the options before it to stderr.
  daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG, 0,
                             nullptr, nullptr, &Handle, &app_, MHD_OPTION_EXTERNAL_LOGGER, &MhdLog,
                             &app_, MHD_OPTION_LISTEN_SOCKET, static_cast<MHD_socket>(listen_fd),
                             MHD_OPTION_THREAD_POOL_SIZE, static_cast<unsigned>(workers),
                             MHD_OPTION_NOTIFY_COMPLETED, &Completed, nullptr,
                             MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
  if (!daemon_) {
    close(listen_fd);
    *error = "cannot start the HTTP server";
    return false;
  }
  return true;
}

void HttpServer::Stop() {
  if (daemon_) MHD_stop_daemon(daemon_);
  daemon_ = nullptr;
}

}  // namespace demoapp
