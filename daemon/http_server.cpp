#include "daemon/http_server.h"

#include <http_parser.h>
#include <netdb.h>
#include <spdlog/spdlog.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>

#include "daemon/config.h"
#include "daemon/redact.h"

namespace guardian {

struct Responder::Slot {
  HttpServer* server = nullptr;  // null once the connection is gone or the answer given
  HttpServer::Conn* conn = nullptr;
  bool in_handler = false;
  bool answered = false;
  std::optional<HttpResponse> response;  // an answer given while the handler still ran
};

// A listening or accepted stream: a Unix socket or TCP.
union AnyStream {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_pipe_t pipe;
  uv_tcp_t tcp;
};

// One accepted connection: its stream, its parser, and the request being read or answered.
// `since`: when receiving the current request began (the connection's start, or when its
// previous answer was sent); the sweep closes it once that is older than the deadline, unless
// its request is with the handler.
struct HttpServer::Conn {
  AnyStream io;
  HttpServer* server = nullptr;
  http_parser parser{};
  HttpRequest req;
  std::string url, field, value;
  bool in_value = false;
  bool headers_done = false;  // header lines after this are a chunked body's trailers
  bool expect_continue = false;
  size_t head_bytes = 0;
  int early_status = 0;  // the headers alone decided the answer (413, 431, 400)
  std::string early_why;
  bool too_large = false;  // a chunked body over the limit: dropped, answered 413
  bool complete = false;   // a whole request is ready, with the handler or being answered
  bool keep_alive = true;
  bool reading = false;
  bool draining = false;  // answered with "close": reading and dropping until the client's EOF
  bool closing = false;
  uint64_t since = 0;
  std::string pending;  // bytes after the current request (pipelining), parsed once it is answered
  std::shared_ptr<Responder::Slot> slot;  // while the request is with the handler
};

struct HttpServer::Listener {
  AnyStream io;
};

// libuv and http-parser call these; they forward to the server.
struct ConnCallbacks {
  using Conn = HttpServer::Conn;
  static Conn* Of(http_parser* p) { return static_cast<Conn*>(p->data); }

  static int MessageBegin(http_parser* p) {
    Conn* c = Of(p);
    c->req = HttpRequest{};
    c->url.clear();
    c->field.clear();
    c->value.clear();
    c->in_value = false;
    c->headers_done = false;
    c->expect_continue = false;
    c->head_bytes = 0;
    c->too_large = false;
    return 0;
  }
  // Counts the request line and headers against the limit; nonzero stops the parser.
  static int Head(Conn* c, size_t len) {
    c->head_bytes += len;
    if (c->head_bytes <= c->server->limits_.max_header_bytes) return 0;
    c->early_status = 431;
    c->early_why = "request line and headers over " +
                   std::to_string(c->server->limits_.max_header_bytes) + " bytes";
    return 1;
  }
  static int Url(http_parser* p, const char* at, size_t len) {
    Conn* c = Of(p);
    c->url.append(at, len);
    return Head(c, len);
  }
  static void EndHeader(Conn* c) {
    if (!c->in_value) return;
    // Trailers (after a chunked body) are read and ignored.
    if (!c->headers_done) {
      if (strcasecmp(c->field.c_str(), "Content-Type") == 0) c->req.content_type = c->value;
      if (strcasecmp(c->field.c_str(), "Expect") == 0) {
        c->expect_continue = strcasecmp(c->value.c_str(), "100-continue") == 0;
      }
    }
    c->field.clear();
    c->value.clear();
    c->in_value = false;
  }
  static int Field(http_parser* p, const char* at, size_t len) {
    Conn* c = Of(p);
    EndHeader(c);
    c->field.append(at, len);
    return Head(c, len);
  }
  static int Value(http_parser* p, const char* at, size_t len) {
    Conn* c = Of(p);
    c->in_value = true;
    c->value.append(at, len);
    return Head(c, len);
  }
  static int HeadersComplete(http_parser* p) {
    Conn* c = Of(p);
    EndHeader(c);
    c->headers_done = true;
    c->req.method = http_method_str(static_cast<http_method>(p->method));
    http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(c->url.data(), c->url.size(), p->method == HTTP_CONNECT, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH))) {
      c->early_status = 400;
      c->early_why = "malformed request target";
      http_parser_pause(p, 1);
      return 0;
    }
    auto part = [&](int f) {
      return std::string_view(c->url).substr(u.field_data[f].off, u.field_data[f].len);
    };
    c->req.path = UrlDecode(part(UF_PATH), false);
    if (u.field_set & (1 << UF_QUERY)) c->req.query = DecodeQuery(part(UF_QUERY));
    // A declared length over the limit is answered now: the body is never read, so it can never
    // be taken for requests of its own.
    const bool chunked = (p->flags & F_CHUNKED) != 0;
    int64_t max = c->server->limits_.max_body_bytes;
    if (!chunked && p->content_length != ULLONG_MAX &&
        p->content_length > static_cast<uint64_t>(max)) {
      c->early_status = 413;
      c->early_why = "request body over " + std::to_string(max) + " bytes";
      http_parser_pause(p, 1);
      return 0;
    }
    bool has_body = chunked || (p->content_length != ULLONG_MAX && p->content_length > 0);
    if (c->expect_continue && has_body && p->http_major == 1 && p->http_minor >= 1) {
      c->server->SendContinue(c);
    }
    return 0;
  }
  static int Body(http_parser* p, const char* at, size_t len) {
    Conn* c = Of(p);
    if (c->too_large) return 0;  // past the limit the rest is read and dropped
    if (c->req.body.size() + len > static_cast<size_t>(c->server->limits_.max_body_bytes)) {
      c->too_large = true;
      std::string().swap(c->req.body);
      return 0;
    }
    c->req.body.append(at, len);
    return 0;
  }
  static int MessageComplete(http_parser* p) {
    Conn* c = Of(p);
    c->complete = true;
    c->keep_alive = http_should_keep_alive(p) != 0 && !p->upgrade;
    // One request at a time: the parser stops here until this one is answered.
    http_parser_pause(p, 1);
    return 0;
  }

  static const http_parser_settings* Settings() {
    static const http_parser_settings s = [] {
      http_parser_settings s{};
      s.on_message_begin = MessageBegin;
      s.on_url = Url;
      s.on_header_field = Field;
      s.on_header_value = Value;
      s.on_headers_complete = HeadersComplete;
      s.on_body = Body;
      s.on_message_complete = MessageComplete;
      return s;
    }();
    return &s;
  }

  static void Alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    HttpServer* s = static_cast<Conn*>(h->data)->server;
    *buf = uv_buf_init(s->read_buf_.get(), kReadBuf);
  }
  static void Read(uv_stream_t* st, ssize_t n, const uv_buf_t* buf) {
    Conn* c = static_cast<Conn*>(st->data);
    if (n < 0) return c->server->CloseConn(c);  // EOF or an error; a request not whole is lost
    if (n == 0 || c->draining) return;
    c->server->Parse(c, buf->base, static_cast<size_t>(n));
  }
  static void Closed(uv_handle_t* h) {
    Conn* c = static_cast<Conn*>(h->data);
    HttpServer* s = c->server;
    delete c;
    s->open_handles_--;
    s->MaybeClosed();
  }

  static constexpr size_t kReadBuf = 64 * 1024;
};

namespace {

// Loop thread only; shared by every server so that passes of two servers never share a number.
uint64_t g_pass = 0;

// A write and what it keeps alive until written.
struct WriteReq {
  uv_write_t req;
  HttpServer::Conn* conn = nullptr;
  std::string head;
  std::shared_ptr<const std::string> body;
  bool answer = false;  // false: a "100 Continue"
  bool close_after = false;
};

struct ShutdownReq {
  uv_shutdown_t req;
};

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string HttpDate(time_t t) {
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return std::string(buf, n);
}

}  // namespace

std::string UrlDecode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && Hex(s[i + 1]) >= 0 && Hex(s[i + 2]) >= 0) {
      out += static_cast<char>(Hex(s[i + 1]) * 16 + Hex(s[i + 2]));
      i += 2;
    } else {
      out += plus_is_space && s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

std::map<std::string, std::string> DecodeQuery(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string key = UrlDecode(pair.substr(0, eq), true);
    out[key] = eq == std::string_view::npos ? "" : UrlDecode(pair.substr(eq + 1), true);
  }
  return out;
}

std::string ResponseHead(int status, const std::string& content_type, size_t content_length,
                         const char* connection, const std::string& date) {
  std::string head =
      "HTTP/1.1 " + std::to_string(status) + " " +
      http_status_str(static_cast<http_status>(status)) + "\r\nDate: " + date +
      "\r\nContent-Type: " + content_type +
      "\r\nCache-Control: no-store\r\nContent-Length: " + std::to_string(content_length) + "\r\n";
  if (connection) head += std::string("Connection: ") + connection + "\r\n";
  head += "\r\n";
  return head;
}

HttpResponse JsonResponse(int status, const nlohmann::json& body) {
  return {status, "application/json",
          body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", nullptr};
}

HttpResponse ErrorResponse(int status, const std::string& message) {
  return JsonResponse(status, {{"error", {{"status", status}, {"message", message}}}});
}

void Responder::operator()(HttpResponse response) const {
  auto slot = slot_.lock();
  if (!slot || slot->answered || !slot->server) return;
  slot->answered = true;
  if (slot->in_handler) {
    slot->response = std::move(response);
    return;
  }
  slot->server->Answer(slot->conn, std::move(response));
}

HttpServer::HttpServer(uv_loop_t* loop, HttpLimits limits, Handler handler)
    : loop_(loop), limits_(limits), handler_(std::move(handler)) {}

// Close() must have run: every handle holds a pointer to this server.
HttpServer::~HttpServer() = default;

Status HttpServer::Start(int listen_fd, std::string name) {
  name_ = std::move(name);
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    int e = errno;
    ::close(listen_fd);
    return Status::IOError("api " + name_ + ": getsockname: " + std::strerror(e));
  }
  unix_ = ss.ss_family == AF_UNIX;
  read_buf_ = std::make_unique<char[]>(ConnCallbacks::kReadBuf);
  auto* listener = new Listener();
  listener->io.handle.data = this;
  int rc =
      unix_ ? uv_pipe_init(loop_, &listener->io.pipe, 0) : uv_tcp_init(loop_, &listener->io.tcp);
  if (rc == 0) {
    rc = unix_ ? uv_pipe_open(&listener->io.pipe, listen_fd)
               : uv_tcp_open(&listener->io.tcp, listen_fd);
    if (rc != 0) ::close(listen_fd);
  } else {
    ::close(listen_fd);
    delete listener;
    return Status::IOError("api " + name_ + ": " + uv_strerror(rc));
  }
  listener_ = listener;
  open_handles_++;
  if (rc == 0) {
    rc = uv_listen(&listener->io.stream, 128, [](uv_stream_t* st, int status) {
      auto* self = static_cast<HttpServer*>(st->data);
      if (status < 0) {
        spdlog::warn("api {}: accept: {}", self->name_, uv_strerror(status));
        return;
      }
      self->Accept();
    });
  }
  dispatch_ = new uv_check_t;
  no_wait_ = new uv_idle_t;
  sweep_ = new uv_timer_t;
  uv_check_init(loop_, dispatch_);
  uv_idle_init(loop_, no_wait_);
  uv_timer_init(loop_, sweep_);
  dispatch_->data = no_wait_->data = sweep_->data = this;
  open_handles_ += 3;
  // A chore: it must not keep a stopping loop alive.
  uv_unref(reinterpret_cast<uv_handle_t*>(sweep_));
  if (rc != 0) return Status::IOError("api " + name_ + ": " + uv_strerror(rc));
  return Status::OK();
}

void HttpServer::Accept() {
  auto* c = new Conn();
  c->server = this;
  if (unix_) {
    uv_pipe_init(loop_, &c->io.pipe, 0);
  } else {
    uv_tcp_init(loop_, &c->io.tcp);
  }
  c->io.handle.data = c;
  open_handles_++;
  conns_.insert(c);
  if (uv_accept(&listener_->io.stream, &c->io.stream) != 0) return CloseConn(c);
  if (closing_ || conns_.size() > static_cast<size_t>(limits_.max_connections)) {
    spdlog::debug("api {}: {} connections open, closing a new one", name_, conns_.size() - 1);
    return CloseConn(c);
  }
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  c->since = uv_now(loop_);
  StartReading(c);
  if (conns_.size() == 1) {
    uint64_t every = static_cast<uint64_t>(std::max<int64_t>(100, limits_.idle_timeout_ms / 4));
    uv_timer_start(
        sweep_, [](uv_timer_t* h) { static_cast<HttpServer*>(h->data)->Sweep(); }, every, every);
  }
}

void HttpServer::StartReading(Conn* c) {
  if (c->reading || c->closing) return;
  if (uv_read_start(&c->io.stream, ConnCallbacks::Alloc, ConnCallbacks::Read) != 0) {
    return CloseConn(c);
  }
  c->reading = true;
}

void HttpServer::StopReading(Conn* c) {
  if (!c->reading) return;
  uv_read_stop(&c->io.stream);
  c->reading = false;
}

void HttpServer::Parse(Conn* c, const char* data, size_t len) {
  size_t n = http_parser_execute(&c->parser, ConnCallbacks::Settings(), data, len);
  http_errno err = HTTP_PARSER_ERRNO(&c->parser);
  if (c->early_status != 0 || (err != HPE_OK && err != HPE_PAUSED)) {
    // Nothing more is read as requests from this connection.
    StopReading(c);
    int status = c->early_status;
    std::string why = c->early_why;
    if (status == 0) {
      status = err == HPE_HEADER_OVERFLOW ? 431 : 400;
      why = std::string("malformed request: ") + http_errno_description(err);
    }
    if (status == 413) requests_++;
    c->complete = true;
    Send(c, ErrorResponse(status, why), true);
    return;
  }
  if (c->complete) {
    StopReading(c);
    c->pending.assign(data + n, len - n);
    ready_.push_back(c);
    if (!uv_is_active(reinterpret_cast<uv_handle_t*>(dispatch_))) {
      uv_check_start(dispatch_,
                     [](uv_check_t* h) { static_cast<HttpServer*>(h->data)->Dispatch(); });
      uv_idle_start(no_wait_, [](uv_idle_t*) {});
    }
  }
}

void HttpServer::Dispatch() {
  ++g_pass;
  // Serving adds nothing to ready_: a connection's next request is parsed only once its answer
  // is written, in the write callback.
  auto ready = std::move(ready_);
  ready_.clear();
  for (Conn* c : ready) Serve(c);
  if (!ready_.empty()) return;  // not expected (see above); then the next turn serves them
  uv_check_stop(dispatch_);
  uv_idle_stop(no_wait_);
}

void HttpServer::Serve(Conn* c) {
  requests_++;
  if (c->too_large) {
    return Answer(c, ErrorResponse(413, "request body over " +
                                            std::to_string(limits_.max_body_bytes) + " bytes"));
  }
  if (closing_) return Answer(c, ErrorResponse(503, "guardiand is stopping"));
  c->req.pass = g_pass;
  auto slot = std::make_shared<Responder::Slot>();
  slot->server = this;
  slot->conn = c;
  slot->in_handler = true;
  c->slot = slot;
  try {
    handler_(c->req, Responder(slot));
  } catch (const std::exception& e) {
    // A handler bug must cost one request, never the daemon.
    spdlog::error("api: {} {}: {}", c->req.method, c->req.path, e.what());
    if (!slot->answered) {
      slot->answered = true;
      slot->response = ErrorResponse(500, "internal error");
    }
  }
  slot->in_handler = false;
  if (slot->response && slot->server) Answer(c, std::move(*slot->response));
}

void HttpServer::Answer(Conn* c, HttpResponse response) {
  if (c->slot) {
    c->slot->server = nullptr;
    c->slot.reset();
  }
  Send(c, std::move(response), !c->keep_alive);
}

void HttpServer::SendContinue(Conn* c) {
  auto* w = new WriteReq();
  w->conn = c;
  w->head = "HTTP/1.1 100 Continue\r\n\r\n";
  uv_buf_t buf = uv_buf_init(w->head.data(), static_cast<unsigned>(w->head.size()));
  w->req.data = w;
  if (uv_write(&w->req, &c->io.stream, &buf, 1, &HttpServer::Written) != 0) {
    delete w;
    CloseConn(c);
  }
}

void HttpServer::Send(Conn* c, HttpResponse r, bool close_after) {
  if (c->closing) return;
  auto* w = new WriteReq();
  w->conn = c;
  w->answer = true;
  w->close_after = close_after;
  // The last place an answer passes before it leaves: no secret of the config goes out, whoever
  // put it into the text (evidence quoting a server, a playbook's message).
  if (auto redacted = Redactor::Global().Redacted(r.text())) {
    w->body = std::make_shared<const std::string>(std::move(*redacted));
  } else if (r.shared_body) {
    w->body = std::move(r.shared_body);
  } else {
    w->body = std::make_shared<const std::string>(std::move(r.body));
  }
  time_t now = std::time(nullptr);
  if (now != date_at_) {
    date_at_ = now;
    date_ = HttpDate(now);
  }
  const char* connection = close_after                                                ? "close"
                           : (c->parser.http_major == 1 && c->parser.http_minor == 0) ? "keep-alive"
                                                                                      : nullptr;
  w->head = ResponseHead(r.status, r.content_type, w->body->size(), connection, date_);
  uv_buf_t bufs[2] = {
      uv_buf_init(w->head.data(), static_cast<unsigned>(w->head.size())),
      uv_buf_init(const_cast<char*>(w->body->data()), static_cast<unsigned>(w->body->size()))};
  unsigned nbufs = c->req.method == "HEAD" || w->body->empty() ? 1 : 2;
  w->req.data = w;
  // The deadline for the next request (or for a client slow to read this answer) starts now.
  c->since = uv_now(loop_);
  if (uv_write(&w->req, &c->io.stream, bufs, nbufs, &HttpServer::Written) != 0) {
    delete w;
    CloseConn(c);
  }
}

void HttpServer::Written(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  Conn* c = w->conn;
  bool answer = w->answer;
  bool close_after = w->close_after;
  delete w;
  if (status == UV_ECANCELED || c->closing) return;
  HttpServer* self = c->server;
  if (status < 0) return self->CloseConn(c);
  if (!answer) return;
  if (close_after) return self->Drain(c);
  self->Resume(c);
}

void HttpServer::Drain(Conn* c) {
  // Half-close, then read and drop until the client closes (or the deadline): closing outright
  // with its unread bytes still coming would reset the connection, and a TCP client could lose
  // the answer it has not read yet.
  c->draining = true;
  c->since = uv_now(loop_);
  auto* sd = new ShutdownReq();
  sd->req.data = c;
  if (uv_shutdown(&sd->req, &c->io.stream, [](uv_shutdown_t* req, int status) {
        auto* c = static_cast<Conn*>(req->data);
        delete reinterpret_cast<ShutdownReq*>(req);
        if (status < 0 && status != UV_ECANCELED && !c->closing) c->server->CloseConn(c);
      }) != 0) {
    delete sd;
    return CloseConn(c);
  }
  StartReading(c);
}

void HttpServer::Resume(Conn* c) {
  c->complete = false;
  c->since = uv_now(loop_);
  http_parser_pause(&c->parser, 0);
  if (!c->pending.empty()) {
    std::string rest = std::move(c->pending);
    c->pending.clear();
    Parse(c, rest.data(), rest.size());
  }
  if (!c->complete && !c->closing) StartReading(c);
}

void HttpServer::Sweep() {
  uint64_t now = uv_now(loop_);
  uint64_t deadline = static_cast<uint64_t>(limits_.idle_timeout_ms);
  std::vector<Conn*> late;
  for (Conn* c : conns_) {
    if (c->slot || now - c->since <= deadline)
      continue;  // with the handler: not the client's fault
    late.push_back(c);
  }
  for (Conn* c : late) {
    if (!c->draining) {
      spdlog::debug("api {}: closing a connection that took over {} ms to send its request", name_,
                    deadline);
    }
    CloseConn(c);
  }
}

void HttpServer::CloseConn(Conn* c) {
  if (c->closing) return;
  c->closing = true;
  conns_.erase(c);
  ready_.erase(std::remove(ready_.begin(), ready_.end(), c), ready_.end());
  if (c->slot) {
    c->slot->server = nullptr;
    c->slot.reset();
  }
  c->reading = false;
  uv_close(&c->io.handle, ConnCallbacks::Closed);
  if (conns_.empty() && sweep_) uv_timer_stop(sweep_);
}

void HttpServer::Close(std::function<void()> closed) {
  on_closed_ = std::move(closed);
  closing_ = true;
  auto on_close = [](uv_handle_t* h) {
    auto* self = static_cast<HttpServer*>(h->data);
    switch (h->type) {
      case UV_CHECK:
        delete reinterpret_cast<uv_check_t*>(h);
        break;
      case UV_IDLE:
        delete reinterpret_cast<uv_idle_t*>(h);
        break;
      case UV_TIMER:
        delete reinterpret_cast<uv_timer_t*>(h);
        break;
      default:
        delete reinterpret_cast<Listener*>(h);
        break;  // the listener: io is its first member
    }
    self->open_handles_--;
    self->MaybeClosed();
  };
  if (listener_) uv_close(&listener_->io.handle, on_close);
  if (dispatch_) uv_close(reinterpret_cast<uv_handle_t*>(dispatch_), on_close);
  if (no_wait_) uv_close(reinterpret_cast<uv_handle_t*>(no_wait_), on_close);
  if (sweep_) uv_close(reinterpret_cast<uv_handle_t*>(sweep_), on_close);
  listener_ = nullptr;
  dispatch_ = nullptr;
  no_wait_ = nullptr;
  sweep_ = nullptr;
  std::vector<Conn*> open(conns_.begin(), conns_.end());
  for (Conn* c : open) {
    // A request still waiting for its handler, or not yet handed to it, gets a 503 if the
    // socket takes it now; the connection is closed either way.
    bool answered_or_idle =
        !c->complete || (!c->slot && std::find(ready_.begin(), ready_.end(), c) == ready_.end());
    if (!answered_or_idle) {
      HttpResponse r = ErrorResponse(503, "guardiand is stopping");
      std::string text = ResponseHead(r.status, r.content_type, r.body.size(), "close",
                                      HttpDate(std::time(nullptr))) +
                         r.body;
      uv_buf_t buf = uv_buf_init(text.data(), static_cast<unsigned>(text.size()));
      uv_try_write(&c->io.stream, &buf, 1);
    }
    CloseConn(c);
  }
  MaybeClosed();
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
