#include "daemon/http_server.h"

#include <microhttpd.h>
#include <netdb.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <optional>

#include "daemon/config.h"
#include "daemon/redact.h"

namespace guardian {

struct Responder::Slot {
  HttpServer* server = nullptr;  // null once the connection is gone
  MHD_Connection* conn = nullptr;
  HttpServer::Request* req = nullptr;
  bool in_handler = false;
  bool suspended = false;
  std::optional<HttpResponse> response;
};

// One open connection. `since`: when receiving the current request began (the connection's
// start, or the end of its previous request); `busy` while the request is ours to answer.
struct HttpServer::Conn {
  int fd = -1;
  uint64_t since = 0;
  bool busy = false;
  bool cut = false;
};

struct HttpServer::Request {
  HttpRequest http;
  bool too_large = false;
  bool dispatched = false;
  std::shared_ptr<Responder::Slot> slot = std::make_shared<Responder::Slot>();
};

namespace {

// Loop thread only; shared by every server so that passes of two servers never share a number.
uint64_t g_pass = 0;

MHD_Result Queue(MHD_Connection* c, const HttpResponse& r) {
  MHD_Response* resp = nullptr;
  // The last place an answer passes before it leaves: no secret of the config goes out, whoever
  // put it into the text (evidence quoting a server, a playbook's message).
  if (auto redacted = Redactor::Global().Redacted(r.text())) {
    resp =
        MHD_create_response_from_buffer(redacted->size(), redacted->data(), MHD_RESPMEM_MUST_COPY);
  } else if (r.shared_body) {
    // MHD keeps a reference to the shared text until the response is sent and freed.
    using Holder = std::shared_ptr<const std::string>;
    auto* holder = new Holder(r.shared_body);
    resp = MHD_create_response_from_buffer_with_free_callback_cls(
        (*holder)->size(), const_cast<char*>((*holder)->data()),
        [](void* cls) { delete static_cast<Holder*>(cls); }, holder);
    if (!resp) delete holder;
  } else {
    resp = MHD_create_response_from_buffer(r.body.size(), const_cast<char*>(r.body.data()),
                                           MHD_RESPMEM_MUST_COPY);
  }
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type.c_str());
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  MHD_Result ok = MHD_queue_response(c, static_cast<unsigned>(r.status), resp);
  MHD_destroy_response(resp);
  return ok;
}

MHD_Result CollectArg(void* cls, MHD_ValueKind, const char* key, const char* value) {
  auto* q = static_cast<std::map<std::string, std::string>*>(cls);
  if (key) (*q)[key] = value ? value : "";
  return MHD_YES;
}

void LogFromMhd(void* cls, const char* fmt, va_list ap) {
  char buf[512];
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  size_t n = std::strlen(buf);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = '\0';
  spdlog::debug("api {}: {}", static_cast<const char*>(cls), buf);
}

}  // namespace

HttpResponse JsonResponse(int status, const nlohmann::json& body) {
  return {status, "application/json",
          body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", nullptr};
}

HttpResponse ErrorResponse(int status, const std::string& message) {
  return JsonResponse(status, {{"error", {{"status", status}, {"message", message}}}});
}

void Responder::operator()(HttpResponse response) const {
  auto slot = slot_.lock();
  if (!slot || slot->response || !slot->server) return;
  slot->response = std::move(response);
  if (slot->suspended) {
    slot->suspended = false;
    HttpServer* server = slot->server;
    server->suspended_.erase(slot->req);
    MHD_resume_connection(slot->conn);
    // MHD picks the connection up again only inside MHD_run.
    server->ScheduleRun();
  }
}

// The C callbacks MHD calls; they only forward to the server.
struct HttpServerGlue {
  static HttpServer::Conn* ConnOf(MHD_Connection* c) {
    const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? static_cast<HttpServer::Conn*>(info->socket_context) : nullptr;
  }

  static void Connection(void* cls, MHD_Connection* c, void** socket_context,
                         MHD_ConnectionNotificationCode code) {
    auto* self = static_cast<HttpServer*>(cls);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
      auto* conn = new HttpServer::Conn();
      const MHD_ConnectionInfo* info =
          MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
      if (info) conn->fd = info->connect_fd;
      conn->since = uv_now(self->loop_);
      self->conns_.insert(conn);
      *socket_context = conn;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
      // Before MHD closes the fd: Sweep never touches an fd that may have been reused.
      auto* conn = static_cast<HttpServer::Conn*>(*socket_context);
      self->conns_.erase(conn);
      delete conn;
      *socket_context = nullptr;
    }
  }

  static MHD_Result Access(void* cls, MHD_Connection* c, const char* url, const char* method,
                           const char*, const char* upload, size_t* upload_size, void** req_cls) {
    auto* self = static_cast<HttpServer*>(cls);
    auto* req = static_cast<HttpServer::Request*>(*req_cls);
    if (!req) {
      req = new HttpServer::Request();
      req->http.method = method;
      req->http.path = url;
      MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, CollectArg, &req->http.query);
      const char* ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
      if (ct) req->http.content_type = ct;
      req->slot->server = self;
      req->slot->conn = c;
      req->slot->req = req;
      *req_cls = req;
      // A declared length over the limit is answered now, before the body is read: MHD accepts
      // a response only here or once the whole body is in (queueing one mid-upload fails, and
      // MHD then drops the connection without an answer).
      const char* cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
      uint64_t declared = 0;
      if (cl && std::sscanf(cl, "%" SCNu64, &declared) == 1 &&
          declared > static_cast<uint64_t>(self->limits_.max_body_bytes)) {
        req->too_large = true;
        req->dispatched = true;
        if (auto* conn = ConnOf(c)) conn->busy = true;
        self->requests_++;
        req->slot->response = ErrorResponse(
            413, "request body over " + std::to_string(self->limits_.max_body_bytes) + " bytes");
        return Queue(c, *req->slot->response);
      }
      return MHD_YES;
    }
    if (*upload_size > 0) {
      if (!req->too_large && req->http.body.size() + *upload_size >
                                 static_cast<size_t>(self->limits_.max_body_bytes)) {
        req->too_large = true;
        req->http.body.clear();
        req->http.body.shrink_to_fit();
      }
      // Past the limit (a chunked body) the rest is read and dropped; the last call answers 413.
      if (!req->too_large) req->http.body.append(upload, *upload_size);
      *upload_size = 0;
      return MHD_YES;
    }
    auto& slot = req->slot;
    if (slot->response) return Queue(c, *slot->response);
    if (req->dispatched) return MHD_YES;  // resumed spuriously; still waiting
    req->dispatched = true;
    if (auto* conn = ConnOf(c)) conn->busy = true;
    self->requests_++;
    if (req->too_large) {
      slot->response = ErrorResponse(
          413, "request body over " + std::to_string(self->limits_.max_body_bytes) + " bytes");
      return Queue(c, *slot->response);
    }
    if (self->closing_) {
      slot->response = ErrorResponse(503, "guardiand is stopping");
      return Queue(c, *slot->response);
    }
    // The pass it is answered in, not the one its headers came in (a body may arrive later).
    req->http.pass = g_pass;
    slot->in_handler = true;
    try {
      self->handler_(req->http, Responder(slot));
    } catch (const std::exception& e) {
      // A handler bug must cost one request, never the daemon.
      spdlog::error("api: {} {}: {}", req->http.method, req->http.path, e.what());
      if (!slot->response) slot->response = ErrorResponse(500, "internal error");
    }
    slot->in_handler = false;
    if (slot->response) return Queue(c, *slot->response);
    slot->suspended = true;
    self->suspended_[req] = slot;
    MHD_suspend_connection(c);
    return MHD_YES;
  }

  static void Completed(void* cls, MHD_Connection* c, void** req_cls, MHD_RequestTerminationCode) {
    if (auto* conn = ConnOf(c)) {
      conn->busy = false;  // the next request's clock starts now
      conn->since = uv_now(static_cast<HttpServer*>(cls)->loop_);
    }
    auto* req = static_cast<HttpServer::Request*>(*req_cls);
    if (!req) return;
    req->slot->server = nullptr;
    delete req;
    *req_cls = nullptr;
  }
};

HttpServer::HttpServer(uv_loop_t* loop, HttpLimits limits, Handler handler)
    : loop_(loop), limits_(limits), handler_(std::move(handler)) {}

HttpServer::~HttpServer() {
  // Close() must have run; a live MHD daemon here would outlive its loop handles.
  if (mhd_) MHD_stop_daemon(mhd_);
  for (Conn* conn : conns_) delete conn;  // normally none: MHD reports every close
}

Status HttpServer::Start(int listen_fd, std::string name) {
  name_ = std::move(name);
  unsigned timeout_s = static_cast<unsigned>((limits_.idle_timeout_ms + 999) / 1000);
  mhd_ = MHD_start_daemon(
      MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, nullptr, nullptr,
      &HttpServerGlue::Access, this, MHD_OPTION_EXTERNAL_LOGGER, &LogFromMhd,
      const_cast<char*>(name_.c_str()), MHD_OPTION_LISTEN_SOCKET, listen_fd,
      MHD_OPTION_CONNECTION_LIMIT, static_cast<unsigned>(limits_.max_connections),
      MHD_OPTION_CONNECTION_TIMEOUT, timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      limits_.connection_memory_bytes, MHD_OPTION_NOTIFY_COMPLETED, &HttpServerGlue::Completed,
      this, MHD_OPTION_NOTIFY_CONNECTION, &HttpServerGlue::Connection, this, MHD_OPTION_END);
  if (!mhd_) {
    ::close(listen_fd);
    return Status::IOError("api " + name_ + ": libmicrohttpd failed to start");
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(mhd_, MHD_DAEMON_INFO_EPOLL_FD);
  if (!info) {
    MHD_stop_daemon(mhd_);
    mhd_ = nullptr;
    return Status::IOError("api " + name_ + ": libmicrohttpd has no epoll fd");
  }
  poll_ = new uv_poll_t;
  timer_ = new uv_timer_t;
  sweep_ = new uv_timer_t;
  uv_poll_init(loop_, poll_, info->epoll_fd);
  uv_timer_init(loop_, timer_);
  uv_timer_init(loop_, sweep_);
  poll_->data = this;
  timer_->data = this;
  sweep_->data = this;
  open_handles_ = 3;
  uint64_t every = static_cast<uint64_t>(std::max<int64_t>(100, limits_.idle_timeout_ms / 4));
  uv_timer_start(
      sweep_, [](uv_timer_t* h) { static_cast<HttpServer*>(h->data)->Sweep(); }, every, every);
  // A chore: it must not keep a stopping loop alive.
  uv_unref(reinterpret_cast<uv_handle_t*>(sweep_));
  uv_poll_start(poll_, UV_READABLE,
                [](uv_poll_t* h, int, int) { static_cast<HttpServer*>(h->data)->Run(); });
  ArmTimer();
  return Status::OK();
}

void HttpServer::Run() {
  if (!mhd_ || running_) return;
  running_ = true;
  ++g_pass;
  MHD_run(mhd_);
  running_ = false;
  ArmTimer();
}

void HttpServer::ScheduleRun() {
  if (!timer_ || closing_) return;
  uv_timer_start(
      timer_, [](uv_timer_t* h) { static_cast<HttpServer*>(h->data)->Run(); }, 0, 0);
}

void HttpServer::ArmTimer() {
  if (!timer_ || closing_) return;
  MHD_UNSIGNED_LONG_LONG ms = 0;
  if (MHD_get_timeout(mhd_, &ms) != MHD_YES) {
    uv_timer_stop(timer_);
    return;
  }
  uv_timer_start(
      timer_, [](uv_timer_t* h) { static_cast<HttpServer*>(h->data)->Run(); }, ms, 0);
}

void HttpServer::Sweep() {
  uint64_t now = uv_now(loop_);
  uint64_t deadline = static_cast<uint64_t>(limits_.idle_timeout_ms);
  bool cut = false;
  for (Conn* conn : conns_) {
    if (conn->busy || conn->cut || conn->fd < 0 || now - conn->since <= deadline) continue;
    // MHD sees the end of the stream and closes the connection itself, on its next run.
    spdlog::debug("api {}: closing a connection that took over {} ms to send its request", name_,
                  deadline);
    ::shutdown(conn->fd, SHUT_RDWR);
    conn->cut = true;
    cut = true;
  }
  if (cut) ScheduleRun();
}

void HttpServer::Close(std::function<void()> closed) {
  on_closed_ = std::move(closed);
  closing_ = true;
  if (!mhd_) return MaybeClosed();
  // Suspended connections must be resumed before MHD stops; they get a 503.
  auto pending = std::move(suspended_);
  for (auto& [req, slot] : pending) {
    slot->suspended = false;
    slot->response = ErrorResponse(503, "guardiand is stopping");
    MHD_resume_connection(slot->conn);
  }
  MHD_run(mhd_);
  uv_poll_stop(poll_);
  auto on_close = [](uv_handle_t* h) {
    auto* self = static_cast<HttpServer*>(h->data);
    if (h->type == UV_POLL) {
      delete reinterpret_cast<uv_poll_t*>(h);
    } else {
      delete reinterpret_cast<uv_timer_t*>(h);
    }
    self->open_handles_--;
    self->MaybeClosed();
  };
  uv_close(reinterpret_cast<uv_handle_t*>(poll_), on_close);
  uv_close(reinterpret_cast<uv_handle_t*>(timer_), on_close);
  uv_close(reinterpret_cast<uv_handle_t*>(sweep_), on_close);
  poll_ = nullptr;
  timer_ = nullptr;
  sweep_ = nullptr;
  MHD_stop_daemon(mhd_);
  mhd_ = nullptr;
}

void HttpServer::MaybeClosed() {
  if (open_handles_ > 0 || !on_closed_) return;
  auto done = std::move(on_closed_);
  on_closed_ = nullptr;
  done();
}

Status ListenUnix(const std::string& path, int mode, int64_t gid, int* fd_out) {
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::InvalidArgument(path + ": socket path too long");
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::InvalidArgument(path + ": exists and is not a socket; not replacing it");
    }
    // The state dir's lock does not cover an api.socket outside it: never take over a socket
    // that another daemon still answers on.
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un live{};
    live.sun_family = AF_UNIX;
    std::memcpy(live.sun_path, path.c_str(), path.size() + 1);
    bool answered =
        probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&live), sizeof(live)) == 0;
    if (probe >= 0) ::close(probe);
    if (answered) {
      return Status::InvalidArgument(path + ": another process is listening on it");
    }
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Status::IOError(std::string("socket: ") + std::strerror(errno));
  // Bind under a temporary name, set the group and mode, then rename into place: the socket is
  // never reachable at `path` with the umask's looser mode or the wrong group.
  std::string tmp = path + ".new";
  if (tmp.size() >= sizeof(sockaddr_un{}.sun_path)) tmp = path;
  ::unlink(tmp.c_str());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, tmp.c_str(), tmp.size() + 1);
  auto fail = [&](const std::string& what) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return Status::IOError(what + " " + path + ": " + std::strerror(e));
  };
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return fail("bind");
  if (gid >= 0 && ::chown(tmp.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(gid)) != 0)
    return fail("chown");
  if (::chmod(tmp.c_str(), static_cast<mode_t>(mode)) != 0) return fail("chmod");
  if (tmp != path && ::rename(tmp.c_str(), path.c_str()) != 0) return fail("rename");
  if (::listen(fd, 128) != 0) return fail("listen");
  *fd_out = fd;
  return Status::OK();
}

Status ListenTcp(const std::string& host_port, int* fd_out) {
  std::string host, why;
  int port = 0;
  if (!SplitHostPort(host_port, &host, &port, &why)) return Status::InvalidArgument(why);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | (host == "localhost" ? 0 : AI_NUMERICHOST);
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host == "localhost" ? "127.0.0.1" : host.c_str(),
                         std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) return Status::InvalidArgument(host_port + ": " + gai_strerror(rc));
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    ::freeaddrinfo(res);
    return Status::IOError(std::string("socket: ") + std::strerror(errno));
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
    int e = errno;
    ::freeaddrinfo(res);
    ::close(fd);
    return Status::IOError("listen on " + host_port + ": " + std::strerror(e));
  }
  ::freeaddrinfo(res);
  *fd_out = fd;
  return Status::OK();
}

}  // namespace guardian
