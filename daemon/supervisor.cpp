#include "daemon/supervisor.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>

#include "daemon/work.h"

namespace guardian {

Supervisor::Supervisor(uv_loop_t* loop, std::string state_dir, const Clock* clock,
                       Service::EventFn on_event)
    : loop_(loop),
      state_dir_(std::move(state_dir)),
      clock_(clock),
      on_event_(std::move(on_event)),
      orphan_timer_(std::make_unique<Timer>(loop)),
      defer_(std::make_unique<Timer>(loop)) {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
    spdlog::warn("cannot become a child subreaper; orphans of services go to init");
  sigchld_ = new uv_signal_t;
  uv_signal_init(loop_, sigchld_);
  sigchld_->data = this;
  // libuv reaps the children it spawned; this only looks for the orphans it does not know.
  uv_signal_start(
      sigchld_, [](uv_signal_t* h, int) { static_cast<Supervisor*>(h->data)->ScanOrphans(); },
      SIGCHLD);
  uv_unref(reinterpret_cast<uv_handle_t*>(sigchld_));
}

Supervisor::~Supervisor() {
  *alive_ = false;
  if (sigchld_) {
    uv_close(reinterpret_cast<uv_handle_t*>(sigchld_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_signal_t*>(h); });
  }
}

std::string Supervisor::ComingUpAt(int port) {
  if (config_ == nullptr || port <= 0) return "";
  for (const auto& s : config_->services) {
    auto it = ports_.find(s.name);
    int p = it != ports_.end() ? it->second.port : s.port_preferred;
    if (p != port) continue;
    Service* svc = Find(s.name);
    if (svc == nullptr || svc->coming_up()) return s.name;
  }
  return "";
}

Service* Supervisor::Find(const std::string& name) {
  auto it = services_.find(name);
  return it == services_.end() ? nullptr : it->second.get();
}

void Supervisor::Apply(std::shared_ptr<const Config> config, std::function<void()> done) {
  config_ = config;
  registry_path_ = config->port_registry;
  struct Loaded {
    PortTable table;
    std::map<std::string, RecordedProcess> recorded;
    std::string problem;
  };
  auto loaded = std::make_shared<Loaded>();
  std::vector<ServiceConfig> wanted = config->services;
  std::set<std::string> kept;  // running with the same config: nothing to look up for them
  for (const auto& s : wanted) {
    Service* have = Find(s.name);
    if (have && have->config() == s) kept.insert(s.name);
  }
  std::string path = registry_path_;
  std::string dir = state_dir_;
  pid_t self = ::getpid();
  std::weak_ptr<bool> alive = alive_;
  QueueWork(
      loop_,
      [loaded, wanted, kept, path, dir, self] {
        PortTable existing;
        Status s = LoadPortRegistry(path, &existing);
        if (!s.ok() && s.code() != Status::Code::kNotFound)
          loaded->problem = s.message() + "; ports reset to the preferred ones";
        loaded->table = ReconcilePorts(existing, wanted);
        if (!(loaded->table == existing) || !s.ok()) {
          Status w = SavePortRegistry(path, loaded->table);
          if (!w.ok()) loaded->problem += (loaded->problem.empty() ? "" : "; ") + w.message();
        }
        std::set<std::string> unrecorded;  // no record naming a live process
        for (const auto& svc : wanted) {
          if (kept.count(svc.name)) continue;
          RecordedProcess r;
          if (LoadRecordedProcess(IdentityFile(dir, svc.name), &r).ok())
            loaded->recorded[svc.name] = r;
          if (!loaded->recorded.count(svc.name) || !RecordIsLive(r)) unrecorded.insert(svc.name);
        }
        // A guardiand killed right after a spawn never wrote that process's record.
        for (auto& [name, found] : FindUnrecordedServices(dir, unrecorded, self)) {
          SaveRecordedProcess(IdentityFile(dir, name), found);
          loaded->recorded[name] = found;
        }
      },
      [this, alive, loaded, wanted, done] {
        if (alive.expired() || closing_) return;
        if (!loaded->problem.empty()) spdlog::warn("port registry: {}", loaded->problem);
        ports_ = loaded->table;
        auto port_of = [this](const std::string& name) {
          auto it = ports_.find(name);
          return it == ports_.end() ? 0 : it->second.port;
        };
        std::set<std::string> names;
        for (const auto& s : wanted) names.insert(s.name);
        for (auto it = services_.begin(); it != services_.end();) {
          if (names.count(it->first)) {
            ++it;
            continue;
          }
          Retire(std::move(it->second), nullptr);
          it = services_.erase(it);
        }
        for (const auto& s : wanted) {
          auto it = services_.find(s.name);
          if (it != services_.end() && it->second->config() == s) {
            it->second->set_port(port_of(s.name));
            continue;
          }
          auto make = [this, s, port_of, alive](const RecordedProcess* recorded) {
            auto svc = std::make_unique<Service>(
                loop_, s, state_dir_, clock_,
                [this](const Service& sv, const ServiceEvent& e) { OnEvent(sv, e); });
            svc->set_port(port_of(s.name));
            Service* raw = svc.get();
            services_[s.name] = std::move(svc);
            raw->Start(recorded);
          };
          if (it != services_.end()) {
            // Changed: the old process goes first (it may hold the port the new one needs).
            std::unique_ptr<Service> old = std::move(it->second);
            services_.erase(it);
            Retire(std::move(old), [make, alive] {
              if (!alive.expired()) make(nullptr);
            });
            continue;
          }
          auto rec = loaded->recorded.find(s.name);
          make(rec == loaded->recorded.end() ? nullptr : &rec->second);
        }
        if (done) done();
      });
}

void Supervisor::Retire(std::unique_ptr<Service> service, std::function<void()> then) {
  Service* raw = service.get();
  retiring_.push_back(std::move(service));
  std::weak_ptr<bool> alive = alive_;
  raw->Stop("removed or changed in the config", [this, raw, alive, then] {
    if (alive.expired()) return;
    // Destroyed on a later turn: this callback runs inside the Service.
    auto timer = std::make_shared<Timer>(loop_);
    timer->Start(0, [this, raw, alive, then, timer] {
      if (alive.expired()) return;
      for (auto it = retiring_.begin(); it != retiring_.end(); ++it) {
        if (it->get() == raw) {
          retiring_.erase(it);
          break;
        }
      }
      if (then) then();
    });
  });
}

void Supervisor::SetPort(const std::string& name, int port, const std::string& reason,
                         std::function<void(Status)> done) {
  auto it = ports_.find(name);
  if (it == ports_.end())
    return done(Status::NotFound("service '" + name + "' has no port in the registry"));
  PortAssignment& a = it->second;
  if (port < a.lo || port > a.hi)
    return done(Status::InvalidArgument("port " + std::to_string(port) + " is outside " + name +
                                        "'s range [" + std::to_string(a.lo) + ", " +
                                        std::to_string(a.hi) + "]"));
  a.port = port;
  a.moved_at = a.moved() ? clock_->WallMs() : 0;
  a.reason = a.moved() ? reason : "";
  if (Service* s = Find(name)) s->set_port(port);
  PortTable table = ports_;
  std::string path = registry_path_;
  auto result = std::make_shared<Status>();
  QueueWork(
      loop_, [path, table, result] { *result = SavePortRegistry(path, table); },
      [result, done] { done(*result); });
}

void Supervisor::OnEvent(const Service& service, const ServiceEvent& event) {
  if ((event.kind == "exited" || event.kind == "stopped") && event.pid > 0) {
    // The leader is gone: what is left of its process group is orphaned now.
    orphan_groups_[event.pid] = OrphanGroup{
        service.name(), clock_->MonoMs() + service.config().stop_grace_ms, false, ++group_stamp_};
    ScanOrphans();
  }
  if (on_event_) on_event_(service, event);
}

void Supervisor::ScanOrphans() {
  if (closing_) return;
  if (scan_in_flight_) {
    scan_again_ = true;
    return;
  }
  scan_in_flight_ = true;
  auto children = std::make_shared<std::vector<Child>>();
  pid_t self = ::getpid();
  std::weak_ptr<bool> alive = alive_;
  uint64_t stamp = group_stamp_;
  QueueWork(
      loop_,
      [children, self] {
        for (auto& st : ListChildren(self)) {
          std::string service = st.state == 'Z' ? "" : ReadEnvVar(st.pid, kServiceEnv);
          children->push_back(Child{st, std::move(service)});
        }
      },
      [this, alive, children, stamp] {
        if (alive.expired()) return;
        scan_in_flight_ = false;
        OnOrphans(std::move(*children), stamp);
        if (std::exchange(scan_again_, false)) ScanOrphans();
      });
}

bool Supervisor::OutlivedItsService(const Child& c) const {
  if (c.service.empty()) return false;
  auto it = services_.find(c.service);
  if (it == services_.end()) return true;  // removed from the config (or retiring)
  ServiceSnapshot now = it->second->Snapshot();
  if (now.process.pid == 0) return true;
  return c.stat.start_ticks < now.process.start_ticks;
}

void Supervisor::OnOrphans(std::vector<Child> children, uint64_t stamp) {
  // libuv waits for the children it spawned itself (services, playbook programs).
  std::set<pid_t> known;
  uv_walk(
      loop_,
      [](uv_handle_t* h, void* arg) {
        if (h->type == UV_PROCESS)
          static_cast<std::set<pid_t>*>(arg)->insert(
              uv_process_get_pid(reinterpret_cast<uv_process_t*>(h)));
      },
      &known);
  int64_t now = clock_->MonoMs();
  std::set<pid_t> groups_seen;
  for (const auto& child : children) {
    const ProcStat& c = child.stat;
    if (known.count(c.pid)) continue;
    if (c.state == 'Z') {
      int status = 0;
      if (::waitpid(c.pid, &status, WNOHANG) == c.pid)
        spdlog::debug("reaped orphan pid {} (group {})", c.pid, c.pgrp);
      continue;
    }
    auto g = orphan_groups_.find(c.pgrp);
    // A helper that left its service's group (setsid, a double fork) is known by the service
    // its environment names, once the process that made it is gone.
    if (g == orphan_groups_.end() && OutlivedItsService(child)) {
      auto svc = services_.find(child.service);
      int64_t grace = svc == services_.end() ? 5000 : svc->second->config().stop_grace_ms;
      spdlog::info("pid {} of service {} outlived its service's process in a group of its own",
                   c.pid, child.service);
      g = orphan_groups_.emplace(c.pgrp, OrphanGroup{child.service, now + grace, false, 0}).first;
    }
    if (g == orphan_groups_.end()) continue;  // a service that still runs may keep its helpers
    groups_seen.insert(c.pgrp);
    // Listed on the pool a moment ago, so no longer certain to be an unreaped child of ours: a
    // service's leader, listed just before it exited, has been reaped by libuv since (and left
    // `known`), and its pid may be another process's now. Signalled only if the pid still
    // names the process with the start time listed.
    ProcessIdentity id{c.pid, c.start_ticks, ""};
    if (now >= g->second.kill_at) {
      spdlog::warn("orphan pid {} of service {} outlived the grace period; SIGKILL", c.pid,
                   g->second.service);
      SignalIfSame(id, SIGKILL);
    } else if (!g->second.termed) {
      spdlog::info("stopping orphan pid {} left by service {}", c.pid, g->second.service);
      SignalIfSame(id, SIGTERM);
    }
  }
  for (auto it = orphan_groups_.begin(); it != orphan_groups_.end();) {
    if (groups_seen.count(it->first)) {
      it->second.termed = true;
      ++it;
    } else if (it->second.stamp > stamp) {
      ++it;  // added after this scan listed the children: the next scan judges it
    } else {
      it = orphan_groups_.erase(it);
    }
  }
  // Until the orphans are gone: re-check, so the KILL deadline and the reaping happen.
  if (!orphan_groups_.empty() && !closing_) orphan_timer_->Start(100, [this] { ScanOrphans(); });
}

nlohmann::json Supervisor::ServiceJson(const Service& svc) const {
  ServiceSnapshot s = svc.Snapshot();
  nlohmann::json j = {{"name", s.name},
                      {"state", ServiceStateName(s.state)},
                      {"pid", s.process.pid},
                      {"adopted", s.adopted},
                      {"started_at", s.started_at},
                      {"ready_at", s.ready_at},
                      {"starts", s.starts},
                      {"failures", s.failures}};
  if (s.process.pid != 0) {
    j["start_ticks"] = s.process.start_ticks;
    j["exe"] = s.process.exe;
  }
  if (s.next_start_in_ms >= 0) j["next_start_in_ms"] = s.next_start_in_ms;
  if (auto p = ports_.find(s.name); p != ports_.end()) {
    j["port"] = p->second.port;
    j["preferred_port"] = p->second.preferred;
    if (p->second.moved()) j["port_moved_reason"] = p->second.reason;
  }
  if (s.last_exit) {
    j["last_exit"] = {{"code", s.last_exit->code},
                      {"signal", s.last_exit->signal},
                      {"at", s.last_exit->at},
                      {"asked", s.last_exit->asked}};
  }
  return j;
}

nlohmann::json Supervisor::StatusJson() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [name, svc] : services_) out.push_back(ServiceJson(*svc));
  return out;
}

void Supervisor::Close(std::function<void()> closed) {
  closing_ = true;
  orphan_timer_->Stop();
  auto pending = std::make_shared<int>(1);
  auto finish = [this, pending, closed] {
    if (--*pending != 0) return;
    // On a later turn: this may run inside a Service's own callback.
    defer_->Start(0, [this, closed] {
      services_.clear();
      retiring_.clear();
      orphan_timer_.reset();
      if (sigchld_) {
        uv_close(reinterpret_cast<uv_handle_t*>(sigchld_),
                 [](uv_handle_t* h) { delete reinterpret_cast<uv_signal_t*>(h); });
        sigchld_ = nullptr;
      }
      closed();
      defer_.reset();  // last: this callback belongs to it
    });
  };
  for (auto& [name, svc] : services_) {
    ++*pending;
    svc->Close(finish);
  }
  // Stops already under way (retired services) finish on their own callbacks.
  finish();
}

}  // namespace guardian
