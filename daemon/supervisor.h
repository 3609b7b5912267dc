#pragma once
// Supervisor: the services Guardian runs itself (`services:`), their port registry, and the
// orphans they leave. guardiand is a child subreaper (PR_SET_CHILD_SUBREAPER): a process a
// service forked and then abandoned is re-parented to guardiand instead of init, so it is
// reaped here (no zombies) and, once the service it belonged to has exited, stopped like the
// service (TERM, KILL after the grace period) instead of lingering on its port or its files.
// Each is signalled only while its pid still names the process listed (pid and start time).
//
// Thread: loop thread only. Close() before destroying.

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/clock.h"
#include "daemon/config.h"
#include "daemon/port_registry.h"
#include "daemon/service.h"
#include "daemon/timer.h"

namespace guardian {

class Supervisor {
 public:
  // `state_dir` is guardiand's; services keep their records under STATE_DIR/services.
  Supervisor(uv_loop_t* loop, std::string state_dir, const Clock* clock, Service::EventFn on_event);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Installs the services of `config`. The port registry is reconciled and written first
  // (services read their port when they start); then new services start (or adopt the process
  // a previous guardiand recorded), changed ones are stopped and started with the new config,
  // removed ones are stopped. `done` runs once the starts are issued.
  void Apply(std::shared_ptr<const Config> config, std::function<void()> done = nullptr);
  Service* Find(const std::string& name);
  const PortTable& ports() const { return ports_; }
  // Moves service `name` to `port` in the registry, written before `done` runs; the service
  // listens there from its next start. Refused outside its configured range.
  void SetPort(const std::string& name, int port, const std::string& reason,
               std::function<void(Status)> done);
  // The configured service that listens on `port` while it is not up yet (its start is being
  // prepared, it is starting, or the config naming it is still being applied); "" otherwise.
  std::string ComingUpAt(int port);
  // One service as GET /v1/status and guardian.service.info() show it.
  nlohmann::json ServiceJson(const Service& service) const;
  nlohmann::json StatusJson() const;
  // Stops the services that stop with guardiand and closes every handle.
  void Close(std::function<void()> closed);

 private:
  void OnEvent(const Service& service, const ServiceEvent& event);
  void ScanOrphans();
  // A child of ours (re-parented to us, a subreaper), with the service named in its
  // environment (GUARDIAN_SERVICE, which a helper keeps even in a session of its own).
  struct Child {
    ProcStat stat;
    std::string service;
  };
  // `stamp`: the last orphan group added before the scan that listed `children` began.
  void OnOrphans(std::vector<Child> children, uint64_t stamp);
  // Whether `c`, a process of a service's (by its environment) in no orphan group, outlived
  // the process that made it: the service is gone or not running, or its process now is
  // younger than `c` (so `c` is not the live process's helper).
  bool OutlivedItsService(const Child& c) const;
  void Retire(std::unique_ptr<Service> service, std::function<void()> then);

  uv_loop_t* loop_;
  std::string state_dir_;
  const Clock* clock_;
  Service::EventFn on_event_;
  std::shared_ptr<const Config> config_;
  std::map<std::string, std::unique_ptr<Service>> services_;
  std::vector<std::unique_ptr<Service>> retiring_;
  PortTable ports_;
  std::string registry_path_;
  uv_signal_t* sigchld_ = nullptr;
  std::unique_ptr<Timer> orphan_timer_;
  std::unique_ptr<Timer> defer_;  // runs work on a later loop turn
  bool scan_in_flight_ = false;
  bool scan_again_ = false;
  // Process groups of services that exited: members still alive get TERM, then KILL after
  // the deadline (monotonic ms).
  struct OrphanGroup {
    std::string service;
    int64_t kill_at = 0;
    bool termed = false;
    uint64_t stamp = 0;  // when added (group_stamp_): a scan begun before cannot have seen it
  };
  std::map<pid_t, OrphanGroup> orphan_groups_;
  uint64_t group_stamp_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool closing_ = false;
};

}  // namespace guardian
