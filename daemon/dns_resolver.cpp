#include "daemon/dns_resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

#include "daemon/loop_handles.h"

namespace guardian {
namespace {

void LibraryInit() {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
}

std::string KindOf(int status) {
  switch (status) {
    case ARES_SUCCESS:
      return "";
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
      return "nxdomain";
    case ARES_ETIMEOUT:
      return "timeout";
    case ARES_ECONNREFUSED:
    case ARES_EREFUSED:
      return "refused";
    default:
      return "error";
  }
}

int64_t NowMs() { return static_cast<int64_t>(uv_hrtime() / 1'000'000); }

}  // namespace

struct DnsResolver::Impl {
  struct Query {
    Impl* impl = nullptr;
    std::function<void(DnsAnswer)> done;
    int64_t started_ms = 0;
  };

  uv_loop_t* loop;
  ares_channel channel = nullptr;
  WakeTimer* timer = nullptr;
  std::map<ares_socket_t, SocketWatch*> watches;
  std::vector<std::pair<std::function<void(DnsAnswer)>, DnsAnswer>> ready;
  bool closing = false;
  std::shared_ptr<CloseLatch> close_latch;  // set by Close()

  explicit Impl(uv_loop_t* l) : loop(l) {
    LibraryInit();
    timer = WakeTimer::Open(loop);
  }

  // c-ares: watch `fd` for reading/writing, or (neither) stop watching it.
  static void OnSocketState(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<Impl*>(data);
    auto it = self->watches.find(fd);
    if (!readable && !writable) {
      if (it != self->watches.end()) {
        it->second->Close(self->close_latch);
        self->watches.erase(it);
      }
      return;
    }
    if (self->closing) return;
    SocketWatch* w = it == self->watches.end() ? nullptr : it->second;
    if (!w) {
      w = SocketWatch::Open(self->loop, fd);
      if (!w) return;  // the query times out instead
      self->watches[fd] = w;
    }
    w->Start((readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0),
             [self, fd](int status, int ev) {
               bool r = status < 0 || (ev & UV_READABLE);
               bool wr = status < 0 || (ev & UV_WRITABLE);
               ares_process_fd(self->channel, r ? fd : ARES_SOCKET_BAD, wr ? fd : ARES_SOCKET_BAD);
               self->AfterProcess();
             });
  }

  static void OnAnswer(void* arg, int status, int, ares_addrinfo* res) {
    auto* q = static_cast<Query*>(arg);
    if (status == ARES_EDESTRUCTION || q->impl->closing) {  // Close(): no callback
      if (res) ares_freeaddrinfo(res);
      delete q;
      return;
    }
    DnsAnswer a;
    a.elapsed_ms = NowMs() - q->started_ms;
    a.error_kind = KindOf(status);
    if (!a.error_kind.empty()) a.error = ares_strerror(status);
    if (res) {
      for (ares_addrinfo_node* n = res->nodes; n; n = n->ai_next) {
        char buf[INET6_ADDRSTRLEN] = {0};
        const void* addr =
            n->ai_family == AF_INET6
                ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(n->ai_addr)->sin6_addr)
                : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(n->ai_addr)->sin_addr);
        if (inet_ntop(n->ai_family, addr, buf, sizeof buf)) a.addresses.push_back(buf);
      }
      ares_freeaddrinfo(res);
    }
    q->impl->ready.emplace_back(std::move(q->done), std::move(a));
    delete q;
  }

  // After c-ares ran: re-arm its timer and hand out the answers (a callback may Close()).
  void AfterProcess() {
    if (closing) return;
    timeval tv;
    if (timeval* t = ares_timeout(channel, nullptr, &tv)) {
      uint64_t ms = static_cast<uint64_t>(t->tv_sec) * 1000 + t->tv_usec / 1000;
      timer->Start(ms + 1, [this] {
        ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        AfterProcess();
      });
    } else {
      timer->Stop();
    }
    auto out = std::exchange(ready, {});
    for (auto& [done, a] : out) done(std::move(a));
  }
};

DnsResolver::DnsResolver(uv_loop_t* loop) : impl_(std::make_unique<Impl>(loop)) {}

DnsResolver::~DnsResolver() {
  if (impl_->timer) {
    std::fprintf(stderr, "DnsResolver destroyed without Close()\n");
    std::abort();
  }
}

Status DnsResolver::Init(const DnsOptions& o) {
  Impl& im = *impl_;
  if (im.channel) return Status::InvalidArgument("DnsResolver already initialised");
  ares_options opts{};
  opts.sock_state_cb = &Impl::OnSocketState;
  opts.sock_state_cb_data = &im;
  opts.timeout = static_cast<int>(o.timeout_ms);
  opts.tries = o.tries;
  char lookups[] = "b";  // DNS only: /etc/hosts would hide a dead resolver
  opts.lookups = lookups;
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
  int rc = ares_init_options(&im.channel, &opts, mask);
  if (rc != ARES_SUCCESS) {
    im.channel = nullptr;
    return Status::IOError(std::string("c-ares init: ") + ares_strerror(rc));
  }
  if (!o.servers.empty()) {
    std::string csv;
    for (const auto& s : o.servers) csv += (csv.empty() ? "" : ",") + s;
    rc = ares_set_servers_ports_csv(im.channel, csv.c_str());
    if (rc != ARES_SUCCESS)
      return Status::InvalidArgument("DNS servers '" + csv + "': " + ares_strerror(rc));
  }
  return Status::OK();
}

void DnsResolver::Resolve(const std::string& name, std::function<void(DnsAnswer)> done) {
  Impl& im = *impl_;
  if (im.closing || !im.channel) {
    DnsAnswer a;
    a.error_kind = "error";
    a.error = im.closing ? "the resolver is closed" : "the resolver is not initialised";
    return done(std::move(a));
  }
  auto* q = new Impl::Query;
  q->impl = &im;
  q->done = std::move(done);
  q->started_ms = NowMs();
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  ares_getaddrinfo(im.channel, name.c_str(), nullptr, &hints, &Impl::OnAnswer, q);
  im.AfterProcess();  // arms the timer; an answer known at once is handed out now
}

void DnsResolver::Close(std::function<void()> closed) {
  Impl& im = *impl_;
  if (im.closing) return;
  im.closing = true;
  im.ready.clear();
  auto latch = std::make_shared<CloseLatch>();
  latch->pending = 1;  // held until every close below has been asked for
  latch->closed = std::move(closed);
  im.close_latch = latch;
  if (im.channel) ares_destroy(im.channel);  // queries end with ARES_EDESTRUCTION, no callback
  im.channel = nullptr;
  for (auto& [fd, w] : im.watches) w->Close(latch);
  im.watches.clear();
  im.timer->Close(latch);
  im.timer = nullptr;
  im.close_latch.reset();
  latch->Done();
}

}  // namespace guardian
