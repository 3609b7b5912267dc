#pragma once
// PortRegistry: the file that tells each supervised service which port to listen on. Guardian
// owns it (`port_registry:`, default STATE_DIR/ports.json); services read it when they start.
// A service normally gets its preferred port; a port_conflict with a foreign process moves it
// to a free port in its range, and the move is kept (with its reason) until the preferred port
// is given back. Plain logic plus a load and an atomic save; the save is blocking.
//
// File shape: {"services": {"app": {"port": 8081, "preferred": 8080, "range": [8080, 8089],
//              "moved_at": 1700000000000, "reason": "8080 held by pid 42 (nc)"}}}

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/status.h"

namespace guardian {

struct PortAssignment {
  int port = 0;
  int preferred = 0;
  int lo = 0;
  int hi = 0;
  int64_t moved_at = 0;  // wall ms of the last move away from `preferred`; 0 = never moved
  std::string reason;    // why it was moved

  bool moved() const { return port != preferred; }
  bool operator==(const PortAssignment&) const = default;
};

using PortTable = std::map<std::string, PortAssignment>;

// Parses the registry's text. A missing "services" key is an empty table; anything malformed
// is Corruption with what is wrong.
Status ParsePortRegistry(const std::string& text, PortTable* out);
std::string SerializePortRegistry(const PortTable& table);

// The table for the configured services: a service keeps a moved port while it is still inside
// its configured range; otherwise (new service, range changed) it gets its preferred port.
// Services without a port and services no longer configured are dropped.
PortTable ReconcilePorts(const PortTable& existing, const std::vector<ServiceConfig>& services);

// Reads the file; NotFound when there is none. Blocking.
Status LoadPortRegistry(const std::string& path, PortTable* out);
// Writes it atomically (readers never see half a file). Blocking.
Status SavePortRegistry(const std::string& path, const PortTable& table);

}  // namespace guardian
