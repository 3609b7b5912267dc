#include "daemon/http_client.h"

#include <curl/curl.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <vector>

#include "daemon/curl_lib.h"
#include "daemon/loop_handles.h"
#include "daemon/plain_http.h"

namespace guardian {
namespace {

// libcurl's functions, once EnsureCurl() has loaded them: only code on the curl path calls this.
const CurlLib& C() { return *CurlLib::Get(nullptr); }

struct Transfer {
  uint64_t id = 0;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string body;
  size_t max_body = 0;
  std::function<void(std::string_view)> on_data;  // set: `body` holds what waits for it
  bool too_large = false;
  std::function<void(HttpResult)> done;
  char error[CURL_ERROR_SIZE] = {0};

  ~Transfer() {
    if (easy) C().easy_cleanup(easy);
    if (headers) C().slist_free_all(headers);
  }
};

size_t OnBody(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  size_t bytes = size * n;
  if (t->body.size() + bytes > t->max_body) {
    t->too_large = true;
    return 0;  // curl fails the transfer with CURLE_WRITE_ERROR
  }
  t->body.append(data, bytes);
  return bytes;
}

std::string KindOf(CURLcode rc, long os_errno, bool too_large) {
  switch (rc) {
    case CURLE_OK:
      return "";
    case CURLE_OPERATION_TIMEDOUT:
      return "timeout";
    case CURLE_COULDNT_RESOLVE_HOST:
      return "dns";
    case CURLE_COULDNT_CONNECT:
      if (os_errno == ENETUNREACH || os_errno == EHOSTUNREACH) return "unreachable";
      if (os_errno == ETIMEDOUT) return "timeout";
      return "refused";
    case CURLE_WRITE_ERROR:
      return too_large ? "too_large" : "error";
    default:
      return "error";
  }
}

}  // namespace

struct HttpClient::Impl {
  uv_loop_t* loop;
  CURLM* multi = nullptr;
  WakeTimer* timer = nullptr;
  std::map<uint64_t, std::unique_ptr<Transfer>> transfers;
  std::set<SocketWatch*> watches;
  // Easy handles of finished transfers, reset and reused: probes every few tens of ms would
  // otherwise allocate and free a handle's buffers each time.
  std::vector<CURL*> spare;
  static constexpr size_t kMaxSpare = 8;
  uint64_t next_id = 1;
  bool closing = false;
  // Finished transfers whose `done` has not run yet (Finish); Cancel and Close take them out.
  std::set<uint64_t> finishing;
  std::shared_ptr<CloseLatch> close_latch;  // set by Close()

  // Requests that PlainHttp serves, without libcurl.
  std::map<uint64_t, std::shared_ptr<PlainHttp>> plain;

  explicit Impl(uv_loop_t* l) : loop(l) {}

  // Loads libcurl and sets up the multi handle the first time a request needs them.
  bool EnsureCurl(std::string* error) {
    if (multi) return true;
    if (!CurlLib::Get(error)) return false;
    multi = C().multi_init();
    if (!multi) {
      *error = "curl_multi_init failed";
      return false;
    }
    C().multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &Impl::OnSocket);
    C().multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    C().multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &Impl::OnTimer);
    C().multi_setopt(multi, CURLMOPT_TIMERDATA, this);
    timer = WakeTimer::Open(loop);
    return true;
  }

  // curl: watch `s` for `what`, or stop watching it.
  static int OnSocket(CURL*, curl_socket_t s, int what, void* userp, void* socketp) {
    auto* self = static_cast<Impl*>(userp);
    auto* w = static_cast<SocketWatch*>(socketp);
    if (what == CURL_POLL_REMOVE) {
      if (w) {
        self->watches.erase(w);
        if (!self->close_latch) C().multi_assign(self->multi, s, nullptr);
        w->Close(self->close_latch);  // while closing, Close() waits for it too
      }
      return 0;
    }
    if (self->closing) return 0;
    if (!w) {
      w = SocketWatch::Open(self->loop, s);
      if (!w) return -1;  // curl fails that transfer
      C().multi_assign(self->multi, s, w);
      self->watches.insert(w);
    }
    int events = 0;
    if (what & CURL_POLL_IN) events |= UV_READABLE;
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    w->Start(events, [self, s](int status, int ev) {
      int flags = 0;
      if (status < 0) {
        flags = CURL_CSELECT_ERR;
      } else {
        if (ev & UV_READABLE) flags |= CURL_CSELECT_IN;
        if (ev & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
      }
      self->Drive(s, flags);
    });
    return 0;
  }

  // curl: wake me in `ms` (0: as soon as possible, never from inside this callback; -1: never).
  static int OnTimer(CURLM*, long ms, void* userp) {
    auto* self = static_cast<Impl*>(userp);
    if (ms < 0) {
      self->timer->Stop();
    } else {
      self->timer->Start(static_cast<uint64_t>(ms),
                         [self] { self->Drive(CURL_SOCKET_TIMEOUT, 0); });
    }
    return 0;
  }

  void Drive(curl_socket_t s, int flags) {
    if (closing) return;
    int running = 0;
    C().multi_socket_action(multi, s, flags, &running);
    Deliver();
    if (!closing) Finish();
  }

  // Hands streamed bodies what arrived, outside curl's callbacks: `on_data` may cancel a
  // request or close the client, which curl does not allow from inside its own call.
  void Deliver() {
    std::vector<uint64_t> ids;
    for (auto& [id, t] : transfers)
      if (t->on_data && !t->body.empty()) ids.push_back(id);
    for (uint64_t id : ids) {
      if (closing) return;
      auto it = transfers.find(id);
      if (it == transfers.end()) continue;  // cancelled by an earlier callback
      std::string chunk = std::move(it->second->body);
      it->second->body.clear();
      auto on_data = it->second->on_data;  // a copy: the transfer may go inside the call
      on_data(chunk);
    }
  }

  // Hands every finished transfer its response. Collected first: a callback may start or
  // cancel requests, or close the client; one cancelled (or closed) that way is not answered.
  void Finish() {
    struct Ready {
      uint64_t id;
      std::function<void(HttpResult)> done;
      HttpResult result;
    };
    std::vector<Ready> ready;
    int left = 0;
    while (CURLMsg* m = C().multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      char* priv = nullptr;
      C().easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
      auto* t = reinterpret_cast<Transfer*>(priv);
      HttpResult r;
      long os_errno = 0;
      C().easy_getinfo(t->easy, CURLINFO_OS_ERRNO, &os_errno);
      r.error_kind = KindOf(m->data.result, os_errno, t->too_large);
      if (!r.error_kind.empty())
        r.error = t->error[0] ? t->error : C().easy_strerror(m->data.result);
      C().easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &r.code);
      curl_off_t us = 0;
      C().easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &us);
      r.total_ms = us / 1000;
      C().easy_getinfo(t->easy, CURLINFO_CONNECT_TIME_T, &us);
      r.connect_ms = us / 1000;
      C().easy_getinfo(t->easy, CURLINFO_STARTTRANSFER_TIME_T, &us);
      r.first_byte_ms = us / 1000;
      r.body = std::move(t->body);
      auto done = std::move(t->done);
      C().multi_remove_handle(multi, t->easy);
      if (spare.size() < kMaxSpare) {
        spare.push_back(t->easy);
        t->easy = nullptr;
      }
      uint64_t id = t->id;
      transfers.erase(id);  // frees the easy handle unless kept
      finishing.insert(id);
      ready.push_back({id, std::move(done), std::move(r)});
    }
    for (auto& r : ready) {
      if (finishing.erase(r.id) == 0) continue;  // cancelled by an earlier callback
      r.done(std::move(r.result));
    }
  }
};

HttpClient::HttpClient(uv_loop_t* loop) : impl_(std::make_unique<Impl>(loop)) {}

HttpClient::~HttpClient() {
  if (!impl_->closing) {
    std::fprintf(stderr, "HttpClient destroyed without Close()\n");
    std::abort();
  }
}

uint64_t HttpClient::Start(const HttpCall& req, std::function<void(HttpResult)> done) {
  Impl& im = *impl_;
  auto fail = [&](const std::string& why) {
    HttpResult r;
    r.error_kind = "error";
    r.error = why;
    done(std::move(r));
    return uint64_t{0};
  };
  if (im.closing) return fail("the HTTP client is closed");
  UrlParts url;
  if (PlainHttp::Suits(req, &url)) {
    uint64_t id = im.next_id++;
    Impl* self = &im;
    im.plain[id] =
        PlainHttp::Start(im.loop, req, url, [self, id, done = std::move(done)](HttpResult r) {
          self->plain.erase(id);
          done(std::move(r));
        });
    return id;
  }
  std::string why;
  if (!im.EnsureCurl(&why)) return fail(why);
  auto t = std::make_unique<Transfer>();
  t->id = im.next_id++;
  if (!im.spare.empty()) {
    t->easy = im.spare.back();
    im.spare.pop_back();
    C().easy_reset(t->easy);  // every option back to its default; only caches are kept
  } else {
    t->easy = C().easy_init();
  }
  if (!t->easy) return fail("curl_easy_init failed");
  t->max_body = req.max_body_bytes;
  t->done = std::move(done);
  CURL* e = t->easy;
  C().easy_setopt(e, CURLOPT_URL, req.url.c_str());
  C().easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");  // no file://, no gopher://
  C().easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  C().easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout_ms));
  C().easy_setopt(
      e, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(req.connect_timeout_ms > 0 ? req.connect_timeout_ms : req.timeout_ms));
  if (req.timeout_ms == 0) {
    // A stream has no deadline: keep-alive probes find a peer that vanished without a word
    // (a host powered off, a partition) in about a minute instead of never.
    C().easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    C().easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 10L);
    C().easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 5L);
  }
  t->on_data = req.on_data;
  if (!req.ca_file.empty()) C().easy_setopt(e, CURLOPT_CAINFO, req.ca_file.c_str());
  if (!req.cert_file.empty()) C().easy_setopt(e, CURLOPT_SSLCERT, req.cert_file.c_str());
  if (!req.key_file.empty()) C().easy_setopt(e, CURLOPT_SSLKEY, req.key_file.c_str());
  C().easy_setopt(e, CURLOPT_WRITEFUNCTION, &OnBody);
  C().easy_setopt(e, CURLOPT_WRITEDATA, t.get());
  C().easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
  C().easy_setopt(e, CURLOPT_PRIVATE, t.get());
  C().easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  for (const auto& h : req.headers) t->headers = C().slist_append(t->headers, h.c_str());
  if (t->headers) C().easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
  if (!req.body.empty()) {
    C().easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(req.body.size()));
    C().easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req.body.c_str());
  }
  if (req.method != "GET" && !(req.method == "POST" && !req.body.empty()))
    C().easy_setopt(e, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  if (req.method == "HEAD") C().easy_setopt(e, CURLOPT_NOBODY, 1L);
  uint64_t id = t->id;
  Transfer* raw = t.get();
  im.transfers[id] = std::move(t);
  if (C().multi_add_handle(im.multi, raw->easy) != CURLM_OK) {
    auto cb = std::move(raw->done);
    im.transfers.erase(id);
    HttpResult r;
    r.error_kind = "error";
    r.error = "curl_multi_add_handle failed";
    cb(std::move(r));
    return 0;
  }
  return id;  // the timer callback curl just asked for starts it on the next loop turn
}

void HttpClient::Cancel(uint64_t id) {
  if (auto p = impl_->plain.find(id); p != impl_->plain.end()) {
    p->second->Cancel();
    impl_->plain.erase(p);
    return;
  }
  impl_->finishing.erase(id);
  auto it = impl_->transfers.find(id);
  if (it == impl_->transfers.end()) return;
  C().multi_remove_handle(impl_->multi, it->second->easy);
  impl_->transfers.erase(it);
}

size_t HttpClient::in_flight() const { return impl_->transfers.size() + impl_->plain.size(); }

void HttpClient::Close(std::function<void()> closed) {
  Impl& im = *impl_;
  if (im.closing) return;
  im.closing = true;
  auto latch = std::make_shared<CloseLatch>();
  latch->pending = 1;  // held until every close below has been asked for
  latch->closed = std::move(closed);
  im.close_latch = latch;
  for (auto& [id, p] : im.plain) p->Cancel(latch);
  im.plain.clear();
  if (!im.multi) {
    // libcurl was never needed. A timer closed through the latch still makes `closed` come
    // from the loop, after the handles of requests that finished just before have closed.
    WakeTimer::Open(im.loop)->Close(latch);
    im.close_latch.reset();
    latch->Done();
    return;
  }
  for (auto& [id, t] : im.transfers) C().multi_remove_handle(im.multi, t->easy);
  im.transfers.clear();
  im.finishing.clear();
  for (CURL* e : im.spare) C().easy_cleanup(e);
  im.spare.clear();
  C().multi_cleanup(im.multi);  // may still tell OnSocket to drop sockets: latched there
  im.multi = nullptr;
  for (auto* w : im.watches) w->Close(latch);
  im.watches.clear();
  im.timer->Close(latch);
  im.timer = nullptr;
  im.close_latch.reset();
  latch->Done();  // close callbacks run later, on the loop: `closed` comes after the last
}

}  // namespace guardian
