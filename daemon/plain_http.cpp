#include "daemon/plain_http.h"

#include <arpa/inet.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <strings.h>

#include <algorithm>
#include <cctype>

#include "daemon/loop_handles.h"

namespace guardian {
namespace {

bool IsToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string::npos;
  });
}

// "Name: value" with a token name and a value, nothing that could end the line early.
bool PlainHeader(const std::string& h) {
  size_t colon = h.find(':');
  if (colon == std::string::npos || !IsToken(std::string_view(h).substr(0, colon))) return false;
  if (h.find_first_of("\r\n") != std::string::npos) return false;
  return h.find_first_not_of(" \t", colon + 1) != std::string::npos;
}

bool HasHeader(const std::vector<std::string>& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(), [&](const std::string& h) {
    return h.size() > name.size() && h[name.size()] == ':' &&
           strncasecmp(h.data(), name.data(), name.size()) == 0;
  });
}

// As libcurl's path calls a failed connect (http_client.cpp, KindOf): no route or host is
// "unreachable", a timeout "timeout", anything else "refused".
std::string ConnectErrorKind(int status) {
  switch (status) {
    case UV_ENETUNREACH:
    case UV_EHOSTUNREACH:
      return "unreachable";
    case UV_ETIMEDOUT:
      return "timeout";
    default:
      return "refused";
  }
}

int64_t MsSince(uint64_t start_ns) {
  return static_cast<int64_t>((uv_hrtime() - start_ns) / 1'000'000);
}

}  // namespace

bool PlainHttp::Suits(const HttpCall& req, UrlParts* url) {
  if (req.on_data || !req.ca_file.empty() || !req.cert_file.empty() || !req.key_file.empty())
    return false;
  // A request without a deadline (an etcd campaign waits for its turn) needs TCP keep-alive to
  // find a peer that vanished without a word; libcurl sets that up.
  if (req.timeout_ms <= 0) return false;
  UrlParts u;
  if (!ParseUrl(req.url, &u).ok() || u.scheme != "http" || u.has_userinfo) return false;
  unsigned char addr[sizeof(in6_addr)];
  bool numeric = inet_pton(AF_INET, u.host.c_str(), addr) == 1 ||
                 inet_pton(AF_INET6, u.host.c_str(), addr) == 1;
  if (!numeric || !IsToken(req.method)) return false;
  if (!std::all_of(req.headers.begin(), req.headers.end(), PlainHeader)) return false;
  *url = std::move(u);
  return true;
}

// The socket, the connect and write requests, the deadline timer and the parser; freed once
// both handles are closed.
struct PlainHttp::Handles {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  uv_timer_t timer;
  http_parser parser;
  std::string request;  // what uv_write sends; kept until the handles go
  char buf[16 * 1024];
  std::string host_port;  // for messages: "127.0.0.1 port 8080"
  bool head = false;
  size_t max_body = 0;
  int64_t timeout_ms = 0;  // the whole request; 0: none
  std::function<void(HttpResult)> done;
  HttpResult result;
  uint64_t started = 0;
  size_t received = 0;
  int early_status = 0;  // uv_tcp_connect refused at once; answered from the timer
  bool connected = false;
  bool complete = false;
  bool too_large = false;
  bool finished = false;
  bool polled_after_deadline = false;
  int open = 2;
  PlainHttp* owner = nullptr;  // told when these are freed; cleared when it goes first
  std::shared_ptr<CloseLatch> latch;

  static Handles* Of(http_parser* p) { return static_cast<Handles*>(p->data); }

  static int OnHeadersComplete(http_parser* p) {
    Handles* self = Of(p);
    int code = p->status_code;
    self->result.code = code;
    // 1: no body, whatever Content-Length says. http-parser knows it of 1xx, 204 and 304 only
    // when no length is given; an answer to HEAD never has one.
    return self->head || code == 204 || code == 304 || (code >= 100 && code < 200) ? 1 : 0;
  }

  static int OnBody(http_parser* p, const char* at, size_t len) {
    Handles* self = Of(p);
    if (self->result.body.size() + len > self->max_body) {
      self->too_large = true;
      return -1;
    }
    self->result.body.append(at, len);
    return 0;
  }

  static int OnMessageComplete(http_parser* p) {
    Handles* self = Of(p);
    if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101) {
      self->result.body.clear();  // "100 Continue" and the like: the answer comes after
      self->result.code = 0;
      return 0;
    }
    self->complete = true;
    return 1;  // stop here: anything after the answer is not ours
  }

  static const http_parser_settings* Settings() {
    static const http_parser_settings s = [] {
      http_parser_settings s{};
      s.on_headers_complete = &OnHeadersComplete;
      s.on_body = &OnBody;
      s.on_message_complete = &OnMessageComplete;
      return s;
    }();
    return &s;
  }

  void Finish(const std::string& kind, const std::string& why) {
    if (finished) return;
    finished = true;
    result.error_kind = kind;
    result.error = why;
    result.total_ms = MsSince(started);
    auto cb = std::move(done);
    HttpResult r = std::move(result);
    CloseAll();
    if (cb) cb(std::move(r));
  }

  void FinishFromParser() {
    if (complete) return Finish("", "");
    if (too_large)
      return Finish("too_large",
                    "the answer's body is over " + std::to_string(max_body) + " bytes");
    if (HTTP_PARSER_ERRNO(&parser) != HPE_OK)
      Finish("error", std::string("not an HTTP answer: ") +
                          http_errno_description(HTTP_PARSER_ERRNO(&parser)));
  }

  static void OnDeadline(uv_timer_t* t) {
    auto* self = static_cast<Handles*>(t->data);
    if (self->early_status != 0) return self->FinishConnect(self->early_status);
    if (PollOnceBeforeDeadline(t, &Handles::OnDeadline, &self->polled_after_deadline)) return;
    int64_t ms = MsSince(self->started);
    if (!self->connected)
      return self->Finish("timeout", "Connection to " + self->host_port + " timed out after " +
                                         std::to_string(ms) + " milliseconds");
    self->Finish("timeout", "Operation timed out after " + std::to_string(ms) +
                                " milliseconds with " + std::to_string(self->received) +
                                " bytes received");
  }

  void FinishConnect(int status) {
    Finish(ConnectErrorKind(status),
           "Failed to connect to " + host_port + ": " + uv_strerror(status));
  }

  void OnConnected() {
    connected = true;
    result.connect_ms = MsSince(started);
    uv_buf_t b = uv_buf_init(request.data(), static_cast<unsigned>(request.size()));
    write.data = this;
    int rc = uv_write(
        &write, reinterpret_cast<uv_stream_t*>(&tcp), &b, 1, [](uv_write_t* w, int status) {
          auto* self = static_cast<Handles*>(w->data);
          if (status < 0 && status != UV_ECANCELED)
            self->Finish("error", std::string("sending the request: ") + uv_strerror(status));
        });
    if (rc != 0) return Finish("error", std::string("sending the request: ") + uv_strerror(rc));
    rc = uv_read_start(
        reinterpret_cast<uv_stream_t*>(&tcp),
        [](uv_handle_t* h, size_t, uv_buf_t* out) {
          auto* self = static_cast<Handles*>(h->data);
          *out = uv_buf_init(self->buf, sizeof self->buf);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
          static_cast<Handles*>(s->data)->OnRead(n);
        });
    if (rc != 0) return Finish("error", std::string("reading the answer: ") + uv_strerror(rc));
    // What is left of the whole request's time, or no deadline at all.
    uv_timer_stop(&timer);
    polled_after_deadline = false;
    if (timeout_ms > 0) {
      int64_t left = std::max<int64_t>(0, timeout_ms - result.connect_ms);
      uv_timer_start(&timer, &Handles::OnDeadline, static_cast<uint64_t>(left), 0);
    }
  }

  void OnRead(ssize_t n) {
    if (finished) return;
    if (n > 0) {
      if (result.first_byte_ms == 0) result.first_byte_ms = MsSince(started);
      received += static_cast<size_t>(n);
      http_parser_execute(&parser, Settings(), buf, static_cast<size_t>(n));
      return FinishFromParser();
    }
    if (n == UV_EOF) {
      http_parser_execute(&parser, Settings(), nullptr, 0);  // a body that ends with the stream
      if (complete) return Finish("", "");
      Finish("error", received == 0 ? "the server closed the connection without answering"
                                    : "the connection closed before the end of the answer");
      return;
    }
    if (n < 0)
      Finish("error", std::string("receiving the answer: ") + uv_strerror(static_cast<int>(n)));
  }

  // Closing the socket also ends a pending connect or write (their callbacks get
  // UV_ECANCELED, ignored).
  void CloseAll() {
    uv_timer_stop(&timer);
    auto closed = [](uv_handle_t* h) {
      auto* self = static_cast<Handles*>(h->data);
      if (--self->open > 0) return;
      if (self->owner) self->owner->h_ = nullptr;
      auto latch = std::move(self->latch);
      delete self;
      if (latch) latch->Done();
    };
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp)))
      uv_close(reinterpret_cast<uv_handle_t*>(&tcp), closed);
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&timer)))
      uv_close(reinterpret_cast<uv_handle_t*>(&timer), closed);
  }
};

namespace {

std::string RequestText(const HttpCall& req, const UrlParts& url) {
  std::string r = req.method + " " + url.target + " HTTP/1.1\r\n";
  if (!HasHeader(req.headers, "Host")) {
    r += "Host: " + HostForHeader(url);
    if (url.port != 80) r += ":" + std::to_string(url.port);
    r += "\r\n";
  }
  if (!HasHeader(req.headers, "Accept")) r += "Accept: */*\r\n";
  for (const auto& h : req.headers) r += h + "\r\n";
  bool sends_body =
      !req.body.empty() || req.method == "POST" || req.method == "PUT" || req.method == "PATCH";
  if (sends_body) {
    // As curl does for a body it is given: a form, unless the caller said otherwise.
    if (!req.body.empty() && !HasHeader(req.headers, "Content-Type"))
      r += "Content-Type: application/x-www-form-urlencoded\r\n";
    if (!HasHeader(req.headers, "Content-Length"))
      r += "Content-Length: " + std::to_string(req.body.size()) + "\r\n";
  }
  r += "Connection: close\r\n\r\n";
  r += req.body;
  return r;
}

}  // namespace

std::shared_ptr<PlainHttp> PlainHttp::Start(uv_loop_t* loop, const HttpCall& req,
                                            const UrlParts& url,
                                            std::function<void(HttpResult)> done) {
  auto probe = std::shared_ptr<PlainHttp>(new PlainHttp);
  auto* h = new Handles;
  h->done = std::move(done);
  h->started = uv_hrtime();
  h->head = req.method == "HEAD";
  h->max_body = req.max_body_bytes;
  h->timeout_ms = req.timeout_ms;
  h->request = RequestText(req, url);
  h->host_port = url.host + " port " + std::to_string(url.port);
  h->tcp.data = h;
  h->timer.data = h;
  h->connect.data = h;
  http_parser_init(&h->parser, HTTP_RESPONSE);
  h->parser.allow_chunked_length = 1;  // chunked wins over Content-Length, as in curl
  h->parser.data = h;
  uv_tcp_init(loop, &h->tcp);
  uv_timer_init(loop, &h->timer);
  probe->h_ = h;
  h->owner = probe.get();

  sockaddr_storage addr{};
  bool v6 = url.host.find(':') != std::string::npos;
  int rc = v6 ? uv_ip6_addr(url.host.c_str(), url.port, reinterpret_cast<sockaddr_in6*>(&addr))
              : uv_ip4_addr(url.host.c_str(), url.port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc == 0) {
    rc = uv_tcp_connect(&h->connect, &h->tcp, reinterpret_cast<sockaddr*>(&addr),
                        [](uv_connect_t* c, int status) {
                          auto* self = static_cast<Handles*>(c->data);
                          if (status == UV_ECANCELED || self->finished) return;
                          if (status < 0) return self->FinishConnect(status);
                          self->OnConnected();
                        });
  }
  // The deadline counts from now, not from the loop's cached time, which is stale when the
  // caller ran long before starting the request.
  uv_update_time(loop);
  if (rc != 0) {  // refused before any packet (no route, bad family): answered from the loop
    h->early_status = rc;
    uv_timer_start(&h->timer, &Handles::OnDeadline, 0, 0);
    return probe;
  }
  int64_t connect_ms = req.connect_timeout_ms > 0 ? req.connect_timeout_ms
                       : req.timeout_ms > 0       ? req.timeout_ms
                                                  : 300'000;  // curl's default
  if (req.timeout_ms > 0) connect_ms = std::min(connect_ms, req.timeout_ms);
  uv_timer_start(&h->timer, &Handles::OnDeadline, static_cast<uint64_t>(connect_ms), 0);
  return probe;
}

void PlainHttp::Cancel(std::shared_ptr<CloseLatch> latch) {
  if (!h_) return;
  if (latch && !h_->latch) {
    ++latch->pending;
    h_->latch = std::move(latch);
  }
  if (h_->finished) return;
  h_->finished = true;
  h_->done = nullptr;
  h_->CloseAll();
}

PlainHttp::~PlainHttp() {
  Cancel();
  if (h_) h_->owner = nullptr;
}

}  // namespace guardian
