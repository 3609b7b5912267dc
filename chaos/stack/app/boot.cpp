// The boot sequence: port choice, the listen socket, and each chunk's real work.

#include "chaos/stack/app/boot.h"

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "chaos/stack/app/http.h"
#include "chaos/stack/app/util.h"

namespace demoapp {

int ResolvePort(const AppConfig& config, std::optional<int> cli_port, Log& log) {
  if (cli_port) {
    log.Info("port " + std::to_string(*cli_port) + " from --port");
    return *cli_port;
  }
  std::string text;
  int err = ReadFile(config.registry_path, 1 << 20, &text);
  std::string problem;
  if (err != 0) {
    problem = strerror(err);
  } else {
    try {
      const nlohmann::json doc = nlohmann::json::parse(text);
      const nlohmann::json& port = doc.at("services").at(config.service).at("port");
      if (port.is_number_integer() && port.get<int64_t>() > 0 && port.get<int64_t>() <= 65535) {
        int p = port.get<int>();
        log.Info("port " + std::to_string(p) + " from the port registry " + config.registry_path);
        return p;
      }
      problem = "services." + config.service + ".port is not a port number";
    } catch (const nlohmann::json::exception& e) {
      problem = e.what();
    }
  }
  log.Info("port registry " + config.registry_path + " not used (" + problem +
           "): using server.port " + std::to_string(config.port));
  return config.port;
}

namespace {

// The fault-injection hook: extra delay per chunk, read once at boot start.
std::map<std::string, int64_t> ReadFaults(const std::string& path, Log& log) {
  std::map<std::string, int64_t> delays;
  std::string text;
  if (ReadFile(path, 64 * 1024, &text) != 0) return delays;
  try {
    const nlohmann::json doc = nlohmann::json::parse(text);
    if (doc.contains("chunk_delay_ms")) {
      for (const auto& [name, ms] : doc.at("chunk_delay_ms").items()) {
        delays[name] = ms.get<int64_t>();
        log.Warn("faults: " + std::to_string(delays[name]) + " ms extra delay in chunk " + name);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    log.Warn("faults: " + path + " ignored: " + e.what());
  }
  return delays;
}

// Creates, binds and listens. Returns the socket, or -1 with `error` an errno name.
int BindListen(const std::string& host, int port, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) {
    *error = "EADDRNOTAVAIL";  // the host does not name a local address we can use
    return -1;
  }
  int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0) {
    *error = ErrnoName(errno);
    if (fd >= 0) close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

// The port a socket is bound to (differs from the one asked for only with port 0).
int BoundPort(int fd, int fallback) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return fallback;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return fallback;
}

// The listen chunk. False after a failure that ends the process (already recorded).
bool Listen(App& app) {
  std::string error;
  int fd = BindListen(app.config.host, app.port, &error);
  if (fd < 0) {
    app.status->BindFailed(error, app.port);
    std::string msg = "cannot bind " + app.config.host + ":" + std::to_string(app.port) + ": " +
                      error + " (exit 3)";
    app.log->Error(msg);
    fprintf(stderr, "demo-app: %s\n", msg.c_str());
    app.life.Finish(3);
    return false;
  }
  int bound = BoundPort(fd, app.port);
  if (bound != app.port) {
    app.port = bound;
    app.status->SetPort(bound);
  }
  if (!app.http->Start(fd, app.config.workers, &error)) {
    app.log->Error("http: " + error);
    fprintf(stderr, "demo-app: http: %s\n", error.c_str());
    app.life.Finish(1);
    return false;
  }
  app.log->Info("listening on " + app.config.host + ":" + std::to_string(bound));
  return true;
}

void OpenDatabase(App& app) {
  DbResult r = app.db->Open();
  if (!r.ok) app.log->Error("boot: database chunk failed: " + r.Text() + " (serving without it)");
}

void CacheWarm(App& app) {
  bool over_cap = false;
  std::string error = app.memory->Allocate(app.config.warm_mb, false, &over_cap);
  if (!error.empty()) app.log->Warn("boot: cache_warm: " + error);
}

void BuildIndex(App& app) {
  DbResult r = app.index->Build(*app.db);
  if (r.ok) {
    app.log->Info("boot: search index has " + std::to_string(app.index->words()) + " words");
  } else {
    app.log->Warn("boot: search index not built: " + r.Text());
  }
}

}  // namespace

void RunBoot(App& app) {
  int64_t started = NowMs();
  std::map<std::string, int64_t> delays =
      ReadFaults(app.config.runtime_dir + "/faults.json", *app.log);
  Flags flags = app.flags->Get();
  std::vector<ChunkState> chunks;
  for (const ChunkConfig& c : app.config.chunks) {
    ChunkState s;
    s.name = c.name;
    s.critical = c.critical;
    bool wanted = flags.skips(c.name) || (c.name == "cache_warm" && flags.low_memory);
    if (wanted && c.critical) {
      app.log->Warn("boot: refusing to skip critical chunk " + c.name);
    } else if (wanted) {
      s.skipped = true;
      app.log->Warn("boot: skipping chunk " + c.name +
                    (flags.skips(c.name) ? " (flags skip_chunks)" : " (low-memory mode)"));
    }
    chunks.push_back(s);
  }
  app.status->BootStart(chunks);
  app.log->Info("boot: started");

  for (size_t i = 0; i < chunks.size(); ++i) {
    const ChunkConfig& c = app.config.chunks[i];
    if (chunks[i].skipped) continue;
    if (app.life.finished()) return;
    app.status->ChunkStart(c.name);
    app.log->Info("boot: chunk " + c.name + " started");
    int64_t chunk_start = NowMs();
    if (c.name == "listen") {
      if (!Listen(app)) return;
    } else if (c.name == "database") {
      OpenDatabase(app);
    } else if (c.name == "cache_warm") {
      CacheWarm(app);
    } else if (c.name == "search_index") {
      BuildIndex(app);
    }
    // "plugins" has no real work: only its delay.
    if (!app.life.Sleep(c.ms + delays[c.name])) return;
    app.status->ChunkEnd(c.name);
    app.log->Info("boot: chunk " + c.name + " done in " + std::to_string(NowMs() - chunk_start) +
                  " ms");
  }
  app.status->Ready();
  app.log->Info("boot: ready in " + std::to_string(NowMs() - started) + " ms");
}

DbResult ReopenDatabase(App& app, int64_t* rows) {
  DbResult r = app.db->Reopen(rows);
  // The index follows the file it describes; a skipped chunk stays skipped.
  if (r.ok && app.index->attempted()) app.index->Build(*app.db);
  return r;
}

}  // namespace demoapp
