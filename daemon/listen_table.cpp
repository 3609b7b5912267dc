#include "daemon/listen_table.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "daemon/work.h"

namespace guardian {
namespace {

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// NLMSG_OK for a signed `left` (NLMSG_NEXT takes it below zero past a short last message),
// without the macro's comparison of the unsigned nlmsg_len with it.
bool MessageFits(const nlmsghdr* nlh, int left) {
  return left >= static_cast<int>(sizeof(nlmsghdr)) && nlh->nlmsg_len >= sizeof(nlmsghdr) &&
         nlh->nlmsg_len <= static_cast<unsigned>(left);
}

}  // namespace

Status ParseListenerDump(const void* data, size_t len, std::vector<Listener>* out, bool* done) {
  auto* nlh = static_cast<const nlmsghdr*>(data);
  int left = static_cast<int>(len);
  for (; MessageFits(nlh, left); nlh = NLMSG_NEXT(nlh, left)) {
    if (nlh->nlmsg_type == NLMSG_DONE) {
      *done = true;
      return Status::OK();
    }
    if (nlh->nlmsg_type == NLMSG_ERROR) {
      auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(nlh));
      if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr)))
        return Status::IOError("sock_diag: truncated error message");
      return Status::IOError(std::string("sock_diag: ") + std::strerror(-err->error));
    }
    if (nlh->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
    if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg)))
      return Status::IOError("sock_diag: truncated socket message");
    auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(nlh));
    if (m->idiag_state != TCP_LISTEN) continue;
    Listener l;
    l.v6 = m->idiag_family == AF_INET6;
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(l.v6 ? AF_INET6 : AF_INET, m->id.idiag_src, text, sizeof(text));
    l.address = text;
    l.port = ntohs(m->id.idiag_sport);
    l.queued = m->idiag_rqueue;
    l.backlog = m->idiag_wqueue;
    // Attributes after the message: the kernel adds INET_DIAG_SKV6ONLY to IPv6 listeners.
    auto* rta = reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(m) +
                                                NLMSG_ALIGN(sizeof(inet_diag_msg)));
    int rta_len = static_cast<int>(nlh->nlmsg_len - NLMSG_LENGTH(sizeof(inet_diag_msg)));
    for (; RTA_OK(rta, rta_len); rta = RTA_NEXT(rta, rta_len)) {
      if (rta->rta_type == INET_DIAG_SKV6ONLY && RTA_PAYLOAD(rta) >= 1)
        l.v6only = *static_cast<const uint8_t*>(RTA_DATA(rta)) != 0;
    }
    out->push_back(std::move(l));
  }
  if (left != 0) return Status::IOError("sock_diag: malformed message");
  return Status::OK();
}

Status DumpListeners(std::vector<Listener>* out) {
  out->clear();
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return Status::IOError(Errno("sock_diag socket"));
  Status s;
  std::vector<char> buf(32 << 10);
  for (int family : {AF_INET, AF_INET6}) {
    struct {
      nlmsghdr nlh;
      inet_diag_req_v2 req;
    } msg{};
    msg.nlh.nlmsg_len = sizeof(msg);
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.req.sdiag_family = static_cast<uint8_t>(family);
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = 1u << TCP_LISTEN;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd, &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) <
        0) {
      s = Status::IOError(Errno("sock_diag request"));
      break;
    }
    bool done = false;
    while (s.ok() && !done) {
      ssize_t n = recv(fd, buf.data(), buf.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        s = Status::IOError(Errno("sock_diag answer"));
      } else if (n == 0) {
        s = Status::IOError("sock_diag answer: closed before the dump ended");
      } else {
        s = ParseListenerDump(buf.data(), static_cast<size_t>(n), out, &done);
      }
    }
    if (!s.ok()) break;
  }
  close(fd);
  return s;
}

ListenTarget ParseListenTarget(const std::string& host, int port) {
  ListenTarget t;
  t.port = port;
  in6_addr a6{};
  in_addr a4{};
  t.v6 = inet_pton(AF_INET6, host.c_str(), &a6) == 1;
  if (!t.v6 && inet_pton(AF_INET, host.c_str(), &a4) != 1) {
    t.error = "not a numeric address: '" + host + "'";
    return t;
  }
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(t.v6 ? AF_INET6 : AF_INET, t.v6 ? static_cast<void*>(&a6) : &a4, text, sizeof(text));
  t.address = text;
  return t;
}

ListenVerdict JudgeListen(const std::vector<Listener>& table, const std::string& host, int port) {
  return JudgeListen(table, ParseListenTarget(host, port));
}

ListenVerdict JudgeListen(const std::vector<Listener>& table, const ListenTarget& t) {
  if (!t.error.empty()) return {false, t.error};
  const Listener* full = nullptr;
  for (const auto& l : table) {
    if (l.port != t.port) continue;
    bool match = false;
    if (l.v6 == t.v6) {
      match = l.address == t.address || l.address == (t.v6 ? "::" : "0.0.0.0");
    } else if (!t.v6 && l.v6) {
      match = !l.v6only && (l.address == "::" || l.address == "::ffff:" + t.address);
    }
    if (!match) continue;
    // The kernel drops a SYN while the queue holds more than its limit.
    if (l.queued <= l.backlog)
      return {true, "listening (" + std::to_string(l.queued) + " of " + std::to_string(l.backlog) +
                        " queued)"};
    full = &l;
  }
  if (full)
    return {false, "accept queue full (" + std::to_string(full->queued) + " waiting, limit " +
                       std::to_string(full->backlog) + "): the server is not accepting"};
  return {false, "nothing listens on this host at that address and port"};
}

struct ListenTable::State {
  bool closed = false;
  bool in_flight = false;
  uint64_t dumps = 0;
  uint64_t last_started_ms = 0;
  bool have_last = false;
  Status last_status;
  std::vector<Listener> last;
  std::vector<Answer> waiting;
};

ListenTable::ListenTable(uv_loop_t* loop) : loop_(loop), state_(std::make_shared<State>()) {}

ListenTable::~ListenTable() {
  state_->closed = true;
  state_->waiting.clear();
}

uint64_t ListenTable::dumps() const { return state_->dumps; }

void ListenTable::Query(int64_t max_age_ms, Answer answer) {
  State& st = *state_;
  uint64_t now = uv_now(loop_);
  if (!st.in_flight && st.have_last &&
      now - st.last_started_ms <= static_cast<uint64_t>(max_age_ms))
    return answer(st.last_status, st.last);
  st.waiting.push_back(std::move(answer));
  if (!st.in_flight) StartDump();
}

void ListenTable::StartDump() {
  State& st = *state_;
  st.in_flight = true;
  st.dumps++;
  st.last_started_ms = uv_now(loop_);
  auto result = std::make_shared<std::vector<Listener>>();
  auto status = std::make_shared<Status>();
  QueueWork(
      loop_, [result, status] { *status = DumpListeners(result.get()); },
      [state = state_, result, status] {
        if (state->closed) return;
        state->in_flight = false;
        state->have_last = true;
        state->last_status = *status;
        state->last = std::move(*result);
        // An answer may Query again (a probe that chains another); it then waits for a new dump.
        auto waiting = std::move(state->waiting);
        state->waiting.clear();
        for (auto& w : waiting) {
          if (state->closed) return;
          w(state->last_status, state->last);
        }
      });
}

}  // namespace guardian
