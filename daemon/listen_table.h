#pragma once
// ListenTable: this host's listening TCP sockets, read from the kernel with one sock_diag
// (NETLINK_SOCK_DIAG) dump and shared by every `tcp` check with `method: listen`. A connect to a
// local port succeeds exactly when a socket listens there with room in its accept queue (the
// kernel completes the handshake without the server's help), so the table answers the same
// question as a connect without making one: 1000 checks cost a few dumps a second instead of
// 1000 handshakes.
//
// Thread: Query on the loop thread; the dump itself runs on the pool.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "daemon/status.h"

namespace guardian {

struct Listener {
  bool v6 = false;
  std::string address;  // numeric, as inet_ntop writes it: "127.0.0.1", "::"
  int port = 0;
  uint32_t queued = 0;   // connections waiting in the accept queue
  uint32_t backlog = 0;  // the queue's limit (listen()'s backlog, capped by somaxconn)
  bool v6only = false;   // an IPv6 listener that refuses IPv4 connections
};

// Reads every listening TCP socket (IPv4 and IPv6) of this network namespace. Blocking (a
// netlink round trip): call it on the pool.
Status DumpListeners(std::vector<Listener>* out);

// Appends the listeners in one buffer of netlink messages as the kernel answers a dump; sets
// `*done` at NLMSG_DONE. Malformed messages are an error, not skipped.
Status ParseListenerDump(const void* data, size_t len, std::vector<Listener>* out, bool* done);

struct ListenVerdict {
  bool ok = false;
  std::string what;  // "listening (0 of 128 queued)", "nothing listens", "accept queue full ..."
};

// An address and port to look up, parsed once: a check looks its own up every interval.
struct ListenTarget {
  std::string error;  // set when `host` is not a numeric address
  bool v6 = false;
  std::string address;  // inet_ntop's spelling, as the table has it
  int port = 0;
};
ListenTarget ParseListenTarget(const std::string& host, int port);
ListenVerdict JudgeListen(const std::vector<Listener>& table, const ListenTarget& target);

// Whether a connect to host:port would be accepted now, by the listeners in `table`: a socket on
// that port bound to `host` or to the wildcard of its family (an IPv6 wildcard that is not
// v6only takes IPv4 too), with an accept queue that is not full.
ListenVerdict JudgeListen(const std::vector<Listener>& table, const std::string& host, int port);

class ListenTable {
 public:
  explicit ListenTable(uv_loop_t* loop);
  ~ListenTable();  // drops pending queries without calling them
  ListenTable(const ListenTable&) = delete;
  ListenTable& operator=(const ListenTable&) = delete;

  using Answer = std::function<void(const Status&, const std::vector<Listener>&)>;
  // Answers from a dump that began at most `max_age_ms` ago: the last one when it is that
  // fresh (at once), the one in flight, or a new one. So checks probed within `max_age_ms` of
  // each other share one dump.
  void Query(int64_t max_age_ms, Answer answer);

  uint64_t dumps() const;  // dumps started so far, for tests and metrics

 private:
  struct State;
  void StartDump();
  uv_loop_t* loop_;
  std::shared_ptr<State> state_;
};

}  // namespace guardian
