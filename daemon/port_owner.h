#pragma once
// Who listens on a TCP port: the listening sockets from /proc/net/tcp and /proc/net/tcp6 (by
// inode), matched to the processes holding them through /proc/PID/fd. For port_conflict: a stale
// instance of our own app may be stopped, anything else must be left alone, so the owner must be
// known by identity (pid, start time, exe), not guessed. Blocking (it walks /proc): call it on
// the thread pool.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "daemon/proc_identity.h"
#include "daemon/status.h"

namespace guardian {

struct ListeningSocket {
  uint64_t inode = 0;
  std::string address;  // as the kernel lists it, e.g. "0100007F" or "00000000"
  bool v6 = false;
};

// Parses the text of /proc/net/tcp or /proc/net/tcp6: the sockets in LISTEN state on `port`.
std::vector<ListeningSocket> ParseProcNetTcp(const std::string& text, int port, bool v6);

// The processes holding a socket that listens on `port` (any address, IPv4 or IPv6), each once.
// Sockets whose holder cannot be seen (another user's process without privileges) are counted
// in `*unattributed` when it is given.
Status FindPortOwners(int port, std::vector<ProcessIdentity>* owners, int* unattributed = nullptr);

}  // namespace guardian
