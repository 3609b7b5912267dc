// guardian.service: the supervised service the check names in params.service, and only that
// one (a playbook cannot reach another service or any other process); guardian.server: the
// same functions for the check's params.server. See
// docs/playbook-api.md. Calls that act are recorded, not done, in a dry run.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <optional>

#include "daemon/file_util.h"
#include "daemon/memory_probe.h"
#include "daemon/port_owner.h"
#include "daemon/port_survey.h"
#include "daemon/supervisor.h"
#include "daemon/timer.h"
#include "daemon/work.h"
#include "detectors/detector.h"  // kDegradedMarker, shared with the detectors that read it
#include "plugins/host_api.h"
#include "plugins/playbook_run.h"

namespace guardian {
namespace {

constexpr size_t kMaxControlFile = 1 << 20;

// The service a call acts on: the check's params.service for guardian.service.*, its
// params.server for guardian.server.* (the functions' upvalue names the param).
Service* CheckService(lua_State* L, const char* call) {
  PlaybookRun* run = PlaybookRun::From(L);
  const char* param = lua_tostring(L, lua_upvalueindex(1));
  if (param == nullptr) param = "service";
  std::string name = ParamString(run->check().params, param);
  if (name.empty())
    luaL_error(L, "%s: check '%s' names no service (params.%s)", call, run->check().id.c_str(),
               param);
  Supervisor* sup = run->services().supervisor;
  Service* s = sup ? sup->Find(name) : nullptr;
  if (!s) luaL_error(L, "%s: no service '%s' is supervised", call, name.c_str());
  return s;
}

int PushFail(lua_State* L, const std::string& why) {
  lua_pushnil(L);
  lua_pushstring(L, why.c_str());
  return 2;
}

int PushTrue(lua_State* L) {
  lua_pushboolean(L, 1);
  return 1;
}

// guardian.service.info() -> {name, state, pid, started_at, ready_at, port, preferred_port,
//   starts, failures, adopted, last_exit = {code, signal, at, asked}}
int Info(lua_State* L) {
  Service* s = CheckService(L, "guardian.service.info");
  PushJson(L, PlaybookRun::From(L)->services().supervisor->ServiceJson(*s));
  return 1;
}

// Reads a JSON file the service config declares, on the pool; resumes with a table or nil, why.
int AwaitJsonFile(lua_State* L, const char* call, const std::string& path, bool missing_is_empty) {
  if (path.empty()) return luaL_error(L, "%s: the service declares no such file", call);
  PlaybookRun* run = PlaybookRun::From(L);
  return run->Await(L, call, [run, path, missing_is_empty](PlaybookRun::Resume resume) {
    auto doc = std::make_shared<nlohmann::json>();
    auto why = std::make_shared<std::string>();
    QueueWork(
        run->loop(),
        [path, doc, why, missing_is_empty] {
          Status s = ReadJsonObject(path, kMaxControlFile, doc.get());
          if (s.code() == Status::Code::kNotFound && missing_is_empty) {
            *doc = nlohmann::json::object();
          } else if (!s.ok()) {
            *why = path + ": " + s.message();
          }
        },
        [resume, doc, why] {
          resume([doc, why](lua_State* L) {
            if (!why->empty()) return PushFail(L, *why);
            PushJson(L, *doc);
            return 1;
          });
        });
    return std::function<void()>();
  });
}

// guardian.service.status() -> the service's own status document (its status_file) as a table,
// or nil, why.
int StatusDoc(lua_State* L) {
  Service* s = CheckService(L, "guardian.service.status");
  return AwaitJsonFile(L, "guardian.service.status", s->config().status_file, false);
}

// guardian.service.flags() -> the control flags Guardian last wrote (its flags_file); {} if none.
int Flags(lua_State* L) {
  Service* s = CheckService(L, "guardian.service.flags");
  return AwaitJsonFile(L, "guardian.service.flags", s->config().flags_file, true);
}

// guardian.service.memory() -> {pid, rss_bytes, mem_total_bytes, mem_available_bytes,
//   psi_some_avg10, psi_full_avg10, cgroup, oom_kills}: the service's RSS (its process and every
// descendant; absent when it has no process) and the system's memory, read now on the pool;
// oom_kills only with a cgroup. What a ladder checks after each step.
int MemoryFn(lua_State* L) {
  Service* s = CheckService(L, "guardian.service.memory");
  PlaybookRun* run = PlaybookRun::From(L);
  pid_t pid = s->Snapshot().process.pid;
  std::string cgroup = s->config().cgroup;
  return run->Await(L, "guardian.service.memory", [run, pid, cgroup](PlaybookRun::Resume resume) {
    auto doc = std::make_shared<nlohmann::json>(nlohmann::json::object());
    QueueWork(
        run->loop(),
        [doc, pid, cgroup] {
          nlohmann::json& d = *doc;
          uint64_t rss = 0;
          if (pid > 0 && ReadTreeRss(pid, &rss).ok()) {
            d["pid"] = pid;
            d["rss_bytes"] = rss;
          }
          MemInfo mem;
          if (ReadMemInfo(&mem).ok()) {
            d["mem_total_bytes"] = mem.total_bytes;
            d["mem_available_bytes"] = mem.available_bytes;
          }
          Psi psi;
          if (ReadPsi("/proc/pressure/memory", &psi).ok()) {
            d["psi_some_avg10"] = psi.some_avg10;
            d["psi_full_avg10"] = psi.full_avg10;
          }
          uint64_t kills = 0;
          if (!cgroup.empty()) {
            d["cgroup"] = cgroup;
            if (ReadOomKills(cgroup, &kills).ok()) d["oom_kills"] = kills;
          }
        },
        [resume, doc] {
          resume([doc](lua_State* L) {
            PushJson(L, *doc);
            return 1;
          });
        });
    return std::function<void()>();
  });
}

// The dry-run gate for calls that act: records the call and answers true on the next turn.
bool DryRun(lua_State* L, const char* call, int nargs, int* results) {
  PlaybookRun* run = PlaybookRun::From(L);
  run->CheckCanWait(L, call);
  if (!run->RecordAction(L, call, nargs)) return false;
  *results = run->AwaitNothing(L, call, PushTrue);
  return true;
}

int64_t OptInt(lua_State* L, int idx, const char* key, int64_t fallback) {
  if (!lua_istable(L, idx)) return fallback;
  lua_getfield(L, idx, key);
  int64_t v = lua_isnil(L, -1) ? fallback : luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  return v;
}

std::string OptString(lua_State* L, int idx, const char* key, const std::string& fallback) {
  if (!lua_istable(L, idx)) return fallback;
  lua_getfield(L, idx, key);
  std::string v = lua_isnil(L, -1) ? fallback : luaL_checkstring(L, -1);
  lua_pop(L, 1);
  return v;
}

// Resumes with true once `s` is ready, or nil, "not ready within N ms".
void ResumeWhenReady(Service* s, int64_t wait_ms, PlaybookRun::Resume resume) {
  s->WaitReady(wait_ms, [resume, wait_ms](bool ready) {
    if (ready) return resume(PushTrue);
    resume([wait_ms](lua_State* L) {
      return PushFail(L, "not ready within " + std::to_string(wait_ms) + " ms");
    });
  });
}

// guardian.service.restart({wait_ready_ms = N, reason = "..."}) -> true, or nil, why. Stops the
// service (TERM, KILL after its grace) and starts it at once, skipping the restart backoff.
// With wait_ready_ms it returns once the new process is ready, or nil, "not ready within N ms".
int Restart(lua_State* L) {
  Service* s = CheckService(L, "guardian.service.restart");
  int64_t wait_ms = OptInt(L, 1, "wait_ready_ms", 0);
  std::string reason = OptString(L, 1, "reason", "restarted by a playbook");
  int n = 0;
  if (DryRun(L, "guardian.service.restart", lua_gettop(L), &n)) return n;
  PlaybookRun* run = PlaybookRun::From(L);
  reason = "check " + run->check().id + ": " + reason;
  return run->Await(L, "guardian.service.restart",
                    [s, wait_ms, reason](PlaybookRun::Resume resume) {
                      s->Restart(reason, [s, wait_ms, resume](Status st) {
                        if (!st.ok()) {
                          resume([st](lua_State* L) { return PushFail(L, st.message()); });
                          return;
                        }
                        if (wait_ms <= 0) {
                          resume(PushTrue);
                          return;
                        }
                        ResumeWhenReady(s, wait_ms, resume);
                      });
                      return std::function<void()>();
                    });
}

// guardian.service.wait_ready(timeout_ms) -> true, or nil, "not ready within N ms".
int WaitReady(lua_State* L) {
  Service* s = CheckService(L, "guardian.service.wait_ready");
  int64_t wait_ms = luaL_checkinteger(L, 1);
  PlaybookRun* run = PlaybookRun::From(L);
  return run->Await(L, "guardian.service.wait_ready", [s, wait_ms](PlaybookRun::Resume resume) {
    ResumeWhenReady(s, wait_ms, resume);
    return std::function<void()>();
  });
}

// guardian.service.signal("USR1") -> true, or nil, why: only to the service's own main process,
// checked by pid and start time, and only these signals.
int SignalFn(lua_State* L) {
  Service* s = CheckService(L, "guardian.service.signal");
  std::string name = luaL_checkstring(L, 1);
  static const std::pair<const char*, int> kAllowed[] = {
      {"HUP", SIGHUP}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"INT", SIGINT}};
  int sig = 0;
  for (const auto& [n, v] : kAllowed) {
    if (name == n) sig = v;
  }
  if (sig == 0)
    return luaL_error(L, "guardian.service.signal: '%s' is not one of HUP, USR1, USR2, TERM, INT",
                      name.c_str());
  int n = 0;
  if (DryRun(L, "guardian.service.signal", 1, &n)) return n;
  Status st = s->Signal(sig);
  if (!st.ok()) return PushFail(L, st.message());
  return PushTrue(L);
}

// guardian.service.set_flags({key = value, ...}, {wait_ms = 2000}) -> seq, or nil, why. Merges
// the keys into the service's flags file (nil values remove a key), bumps "seq", writes it
// atomically, and with a status_file waits until the service reports flags.seq >= the new seq.
// Changes the service's flags file on the pool (`change` edits the parsed flags; `then`, when
// set, runs there after the write, e.g. for a marker file), increments its seq, then waits up
// to `wait_ms` for the service's status file to report that seq applied. Resumes with the seq,
// or nil, message. Shared by set_flags and degrade.
int AwaitFlagsChange(lua_State* L, const char* call, Service* s,
                     std::function<void(nlohmann::json&)> change, std::function<Status()> then,
                     int64_t wait_ms) {
  PlaybookRun* run = PlaybookRun::From(L);
  std::string flags_path = s->config().flags_file;
  std::string status_path = s->config().status_file;
  uv_loop_t* loop = run->loop();
  return run->Await(
      L, call, [loop, flags_path, status_path, change, then, wait_ms](PlaybookRun::Resume resume) {
        auto seq = std::make_shared<int64_t>(0);
        auto why = std::make_shared<std::string>();
        auto cancelled = std::make_shared<bool>(false);
        QueueWork(
            loop,
            [flags_path, change, then, seq, why] {
              nlohmann::json flags;
              if (!ReadJsonObject(flags_path, kMaxControlFile, &flags).ok())
                flags = nlohmann::json::object();
              change(flags);
              *seq = flags.value("seq", int64_t{0}) + 1;
              flags["seq"] = *seq;
              std::error_code ec;
              std::filesystem::create_directories(std::filesystem::path(flags_path).parent_path(),
                                                  ec);
              Status st = WriteFileAtomic(flags_path, flags.dump(2) + "\n");
              if (!st.ok()) {
                *why = st.message();
              } else if (then) {
                Status t = then();
                if (!t.ok()) *why = t.message();
              }
            },
            [loop, status_path, wait_ms, seq, why, resume, cancelled] {
              if (*cancelled) return;
              if (!why->empty()) {
                resume([why](lua_State* L) { return PushFail(L, *why); });
                return;
              }
              auto push_seq = [seq](lua_State* L) {
                lua_pushinteger(L, *seq);
                return 1;
              };
              if (status_path.empty() || wait_ms <= 0) return resume(push_seq);
              // Poll the service's status for the applied seq: the wait is short and
              // bounded.
              auto timer = std::make_shared<Timer>(loop);
              int64_t deadline = static_cast<int64_t>(uv_now(loop)) + wait_ms;
              auto poll = std::make_shared<std::function<void()>>();
              *poll = [loop, status_path, seq, resume, timer, deadline, poll, cancelled, push_seq,
                       wait_ms] {
                auto applied = std::make_shared<int64_t>(-1);
                QueueWork(
                    loop,
                    [status_path, applied] {
                      nlohmann::json doc;
                      if (!ReadJsonObject(status_path, kMaxControlFile, &doc).ok() ||
                          !doc.contains("flags") || !doc["flags"].is_object())
                        return;
                      *applied = doc["flags"].value("seq", int64_t{-1});
                    },
                    [loop, seq, resume, timer, deadline, poll, cancelled, push_seq, applied,
                     wait_ms] {
                      if (*cancelled) {
                        *poll = nullptr;  // breaks the cycle through the closure
                        return;
                      }
                      if (*applied >= *seq) {
                        *poll = nullptr;
                        return resume(push_seq);
                      }
                      if (static_cast<int64_t>(uv_now(loop)) >= deadline) {
                        *poll = nullptr;
                        int64_t want = *seq;
                        return resume([want, wait_ms](lua_State* L) {
                          return PushFail(L, "the service did not apply flags seq " +
                                                 std::to_string(want) + " within " +
                                                 std::to_string(wait_ms) + " ms");
                        });
                      }
                      timer->Start(20, [poll] {
                        if (*poll) (*poll)();
                      });
                    });
              };
              (*poll)();
            });
        return std::function<void()>([cancelled] { *cancelled = true; });
      });
}

int SetFlags(lua_State* L) {
  Service* s = CheckService(L, "guardian.service.set_flags");
  luaL_checktype(L, 1, LUA_TTABLE);
  nlohmann::json changes = LuaToJson(L, 1, "guardian.service.set_flags");
  if (!changes.is_object() && !(changes.is_array() && changes.empty()))
    return luaL_error(L, "guardian.service.set_flags: expected a table of flag = value");
  if (s->config().flags_file.empty())
    return luaL_error(L, "guardian.service.set_flags: service '%s' declares no flags_file",
                      s->name().c_str());
  int64_t wait_ms = OptInt(L, 2, "wait_ms", 2000);
  int n = 0;
  if (DryRun(L, "guardian.service.set_flags", lua_gettop(L), &n)) return n;
  return AwaitFlagsChange(
      L, "guardian.service.set_flags", s,
      [changes](nlohmann::json& flags) {
        if (changes.is_object()) {
          for (const auto& [k, v] : changes.items()) {
            if (v.is_null()) {
              flags.erase(k);
            } else {
              flags[k] = v;
            }
          }
        }
      },
      nullptr, wait_ms);
}

// The `flag` field of an options table at `idx` ("" when absent).
std::string OptFlag(lua_State* L, int idx) {
  std::string flag;
  if (lua_istable(L, idx)) {
    lua_getfield(L, idx, "flag");
    if (!lua_isnil(L, -1)) flag = luaL_checkstring(L, -1);
    lua_pop(L, 1);
  }
  return flag;
}

// guardian.service.degraded(feature [, {flag = NAME}]) -> degraded, by_this_check
//   What degrade set: `feature` in the flags' degraded_features (or the boolean `flag`), and
//   whether this check's marker says it did it. The detectors judge with the same read.
int Degraded(lua_State* L) {
  Service* s = CheckService(L, "guardian.service.degraded");
  std::string feature = luaL_checkstring(L, 1);
  std::string flag = OptFlag(L, 2);
  PlaybookRun* run = PlaybookRun::From(L);
  std::string dir = run->check_state_dir(), flags_file = s->config().flags_file;
  return run->Await(L, "guardian.service.degraded",
                    [run, dir, flags_file, feature, flag](PlaybookRun::Resume resume) {
                      auto state = std::make_shared<DegradedState>();
                      QueueWork(
                          run->loop(),
                          [=] { *state = ReadDegraded(dir, flags_file, feature, flag); },
                          [state, resume] {
                            resume([state](lua_State* L) {
                              lua_pushboolean(L, state->degraded);
                              lua_pushboolean(L, state->by_this_check);
                              return 2;
                            });
                          });
                      return std::function<void()>();
                    });
}

// guardian.service.degrade(feature, on [, {wait_ms = 2000, flag = NAME, mark = true}])
//   -> seq | nil, message
//   Adds `feature` to (on) or removes it from (off) the flags' degraded_features, or with
//   `flag` sets that boolean flag instead (offline_mode), and keeps the check's marker
//   (STATE_DIR/checks/<id>/degraded-feature) that says this check did it: written when turned
//   on with `mark` (default), removed otherwise. Waits like set_flags.
int Degrade(lua_State* L) {
  Service* s = CheckService(L, "guardian.service.degrade");
  std::string feature = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  bool on = lua_toboolean(L, 2);
  if (s->config().flags_file.empty())
    return luaL_error(L, "guardian.service.degrade: service '%s' declares no flags_file",
                      s->name().c_str());
  std::string flag = OptFlag(L, 3);
  bool mark = true;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "mark");
    if (!lua_isnil(L, -1)) mark = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  int64_t wait_ms = OptInt(L, 3, "wait_ms", 2000);
  int n = 0;
  if (DryRun(L, "guardian.service.degrade", lua_gettop(L), &n)) return n;
  std::string marker = PlaybookRun::From(L)->check_state_dir() + "/" + kDegradedMarker;
  return AwaitFlagsChange(
      L, "guardian.service.degrade", s,
      [feature, on, flag](nlohmann::json& flags) {
        if (!flag.empty()) {
          flags[flag] = on;
          return;
        }
        nlohmann::json list = nlohmann::json::array();
        if (flags.contains("degraded_features") && flags["degraded_features"].is_array())
          for (const auto& f : flags["degraded_features"])
            if (!(f.is_string() && f.get<std::string>() == feature)) list.push_back(f);
        if (on) list.push_back(feature);
        flags["degraded_features"] = list;
      },
      [marker, feature, on, mark]() -> Status {
        if (on && mark) return WriteFileAtomic(marker, feature + "\n");
        if (::unlink(marker.c_str()) != 0 && errno != ENOENT)
          return Status::IOError("cannot remove " + marker + ": " + std::strerror(errno));
        return Status::OK();
      },
      wait_ms);
}

// guardian.service.set_port(port, reason) -> true, or nil, why: records in the port registry
// that the service listens on `port` from its next start (within its configured range).
int SetPort(lua_State* L) {
  Service* s = CheckService(L, "guardian.service.set_port");
  lua_Integer port = luaL_checkinteger(L, 1);
  std::string reason = luaL_optstring(L, 2, "moved by a playbook");
  int n = 0;
  if (DryRun(L, "guardian.service.set_port", lua_gettop(L), &n)) return n;
  PlaybookRun* run = PlaybookRun::From(L);
  Supervisor* sup = run->services().supervisor;
  std::string name = s->name();
  return run->Await(L, "guardian.service.set_port",
                    [sup, name, port, reason](PlaybookRun::Resume resume) {
                      sup->SetPort(name, static_cast<int>(port), reason, [resume](Status st) {
                        if (!st.ok())
                          return resume([st](lua_State* L) { return PushFail(L, st.message()); });
                        resume(PushTrue);
                      });
                      return std::function<void()>();
                    });
}

// The service's range from the port registry: [lo, hi] and its current port.
bool PortRange(lua_State* L, Service* s, int* lo, int* hi, int* current) {
  const PortTable& ports = PlaybookRun::From(L)->services().supervisor->ports();
  auto it = ports.find(s->name());
  if (it == ports.end()) return false;
  *lo = it->second.lo;
  *hi = it->second.hi;
  *current = it->second.port;
  return true;
}

// guardian.service.port_owners([port]) -> {port, unattributed, bind_error, holders = {{pid,
// start_ticks, exe, ours, same_program, description}, ...}}, or nil, why. `port` defaults to
// the service's registry port and must lie in its range.
int PortOwners(lua_State* L) {
  Service* s = CheckService(L, "guardian.service.port_owners");
  int lo = 0, hi = 0, current = 0;
  if (!PortRange(L, s, &lo, &hi, &current))
    return luaL_error(L, "guardian.service.port_owners: service '%s' has no port",
                      s->name().c_str());
  int port = static_cast<int>(luaL_optinteger(L, 1, current));
  if (port < lo || port > hi)
    return luaL_error(L, "guardian.service.port_owners: port %d is outside %s's range [%d, %d]",
                      port, s->name().c_str(), lo, hi);
  ServiceSnapshot snap = s->Snapshot();
  std::string status_file = s->config().status_file;
  PlaybookRun* run = PlaybookRun::From(L);
  return run->Await(L, "guardian.service.port_owners",
                    [run, port, snap, status_file](PlaybookRun::Resume resume) {
                      auto survey = std::make_shared<PortSurvey>();
                      auto status = std::make_shared<Status>();
                      QueueWork(
                          run->loop(),
                          [survey, status, port, snap, status_file] {
                            *status = SurveyPort(port, snap.process.pid, snap.exe, status_file,
                                                 survey.get());
                          },
                          [resume, survey, status] {
                            resume([survey, status](lua_State* L) {
                              if (!status->ok()) return PushFail(L, status->message());
                              nlohmann::json j = {{"port", survey->port},
                                                  {"unattributed", survey->unattributed},
                                                  {"holders", nlohmann::json::array()}};
                              if (!survey->bind_error.empty()) j["bind_error"] = survey->bind_error;
                              for (const auto& h : survey->holders) {
                                j["holders"].push_back({{"pid", h.id.pid},
                                                        {"start_ticks", h.id.start_ticks},
                                                        {"exe", h.id.exe},
                                                        {"ours", h.ours},
                                                        {"same_program", h.same_program},
                                                        {"description", h.Describe()}});
                              }
                              PushJson(L, j);
                              return 1;
                            });
                          });
                      return std::function<void()>();
                    });
}

// A port nobody listens on and that binds on 127.0.0.1 now. Blocking.
bool PortIsFree(int port) {
  std::vector<ProcessIdentity> owners;
  int hidden = 0;
  if (!FindPortOwners(port, &owners, &hidden).ok() || !owners.empty() || hidden > 0) return false;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// guardian.service.free_port() -> the first free port of the service's range after its current
// one (wrapping around), or nil, why. Free: no listener at all, and it binds now.
int FreePort(lua_State* L) {
  Service* s = CheckService(L, "guardian.service.free_port");
  int lo = 0, hi = 0, current = 0;
  if (!PortRange(L, s, &lo, &hi, &current))
    return luaL_error(L, "guardian.service.free_port: service '%s' has no port", s->name().c_str());
  PlaybookRun* run = PlaybookRun::From(L);
  return run->Await(L, "guardian.service.free_port",
                    [run, lo, hi, current](PlaybookRun::Resume resume) {
                      auto found = std::make_shared<int>(0);
                      QueueWork(
                          run->loop(),
                          [found, lo, hi, current] {
                            int n = hi - lo + 1;
                            for (int i = 1; i < n && *found == 0; ++i) {
                              int port = lo + (current - lo + i) % n;
                              if (PortIsFree(port)) *found = port;
                            }
                          },
                          [resume, found, lo, hi] {
                            resume([found, lo, hi](lua_State* L) {
                              if (*found == 0)
                                return PushFail(L, "no free port in [" + std::to_string(lo) + ", " +
                                                       std::to_string(hi) + "]");
                              lua_pushinteger(L, *found);
                              return 1;
                            });
                          });
                      return std::function<void()>();
                    });
}

// Waits for a signalled stale instance to end: polls every 20 ms, SIGKILL once the grace is
// over, gives up 2 s after that. The timer's callback keeps it alive until it finishes.
struct StaleStop : std::enable_shared_from_this<StaleStop> {
  uv_loop_t* loop = nullptr;
  ProcessIdentity target;
  int64_t grace_ms = 0;
  int64_t start_ms = 0;
  bool killed = false;
  bool done = false;
  PlaybookRun::Resume resume;
  std::unique_ptr<Timer> timer;

  void Tick() {
    if (done) return;
    ProcessIdentity still;
    if (!ReadProcessIdentity(target.pid, &still).ok() || !still.SameAs(target))
      return Finish(PushTrue);
    int64_t elapsed = static_cast<int64_t>(uv_now(loop)) - start_ms;
    if (!killed && elapsed >= grace_ms) {
      killed = true;
      SignalIfSame(target, SIGKILL);
    }
    if (elapsed >= grace_ms + 2000) {
      ProcessIdentity t = target;
      return Finish([t](lua_State* L) {
        return PushFail(L, t.ToString() + " is still running after SIGKILL");
      });
    }
    auto self = shared_from_this();
    timer->Start(20, [self] { self->Tick(); });
  }
  void Finish(PlaybookRun::Pusher push) {
    done = true;
    auto r = resume;
    timer.reset();  // allowed from inside its own callback
    r(std::move(push));
  }
  void Cancel() {
    done = true;
    timer.reset();
  }
};

// guardian.service.stop_stale(pid, start_ticks [, {grace_ms = 2000}]) -> true, or nil, why.
// Stops a stale instance of the service's own program: refused (raises) unless that pid is
// still the process with that start time, runs the service's executable and is not the
// supervised process or in its group. SIGTERM, then SIGKILL after grace_ms, each only
// through a pidfd opened after the identity was checked.
int StopStale(lua_State* L) {
  Service* s = CheckService(L, "guardian.service.stop_stale");
  ProcessIdentity want;
  want.pid = static_cast<pid_t>(luaL_checkinteger(L, 1));
  want.start_ticks = static_cast<uint64_t>(luaL_checkinteger(L, 2));
  int64_t grace = OptInt(L, 3, "grace_ms", 2000);
  ProcessIdentity now;
  if (!ReadProcessIdentity(want.pid, &now).ok() || !now.SameAs(want)) {
    lua_pushboolean(L, 1);  // already gone: what was asked is done
    return 1;
  }
  ServiceSnapshot snap = s->Snapshot();
  ProcStat st;
  ReadProcStat(now.pid, &st);
  if (now.pid == snap.process.pid || (snap.process.pid > 0 && st.pgrp == snap.process.pid))
    return luaL_error(L, "guardian.service.stop_stale: pid %d is the service itself",
                      static_cast<int>(now.pid));
  if (snap.exe.empty() || now.exe != snap.exe)
    return luaL_error(L,
                      "guardian.service.stop_stale: pid %d runs %s, not the service's program %s; "
                      "a foreign process is never stopped",
                      static_cast<int>(now.pid), now.exe.c_str(), snap.exe.c_str());
  int n = 0;
  if (DryRun(L, "guardian.service.stop_stale", 2, &n)) return n;
  PlaybookRun* run = PlaybookRun::From(L);
  uv_loop_t* loop = run->loop();
  return run->Await(
      L, "guardian.service.stop_stale", [loop, now, grace](PlaybookRun::Resume resume) {
        Status sent = SignalIfSame(now, SIGTERM);
        if (!sent.ok() && sent.code() != Status::Code::kNotFound) {
          resume([sent](lua_State* L) { return PushFail(L, sent.message()); });
          return std::function<void()>();
        }
        auto stop = std::make_shared<StaleStop>();
        stop->loop = loop;
        stop->target = now;
        stop->grace_ms = grace;
        stop->start_ms = static_cast<int64_t>(uv_now(loop));
        stop->resume = resume;
        stop->timer = std::make_unique<Timer>(loop);
        stop->timer->Start(0, [stop] { stop->Tick(); });  // resumes only from a callback
        std::weak_ptr<StaleStop> weak = stop;
        return std::function<void()>([weak] {
          if (auto s = weak.lock()) s->Cancel();
        });
      });
}

void Install(lua_State* L) {
  static const luaL_Reg fns[] = {
      {"info", Info},          {"status", StatusDoc},     {"flags", Flags},
      {"set_flags", SetFlags}, {"restart", Restart},      {"wait_ready", WaitReady},
      {"signal", SignalFn},    {"set_port", SetPort},     {"port_owners", PortOwners},
      {"free_port", FreePort}, {"stop_stale", StopStale}, {"memory", MemoryFn},
      {"degrade", Degrade},    {"degraded", Degraded},    {nullptr, nullptr}};
  // The same functions twice: guardian.service on params.service, guardian.server on
  // params.server (a check's second service, e.g. the model server an app calls).
  for (const char* param : {"service", "server"}) {
    luaL_newlibtable(L, fns);
    lua_pushstring(L, param);
    luaL_setfuncs(L, fns, 1);
    lua_setfield(L, -2, param);
  }
}

}  // namespace

GUARDIAN_HOST_MODULE(service, "service", Install);

}  // namespace guardian
