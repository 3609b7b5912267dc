#pragma once
// Detector: how one failure mode is noticed. Each built-in detector is one file in detectors/
// that registers itself by mode id (GUARDIAN_REGISTER_DETECTOR); nothing in the core names them.
//
// Contract: Probe never blocks the loop thread (blocking reads go to the thread pool) and calls
// `done` exactly once, on the loop thread. Start may open event sources (inotify, netlink) and
// call `wake` to ask for a probe now instead of at the next interval. Close releases them and
// calls `closed` once every handle is closed. A detector may be destroyed only after `closed`.

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/config.h"
#include "daemon/observation.h"
#include "daemon/params.h"
#include "daemon/status.h"

namespace guardian {

class Supervisor;
class HttpClient;
class ListenTable;

// What a detector gets to work with.
struct DetectorEnv {
  uv_loop_t* loop = nullptr;
  Supervisor* supervisor = nullptr;     // the services guardiand runs; null in some tests
  HttpClient* http = nullptr;           // shared HTTP client on the loop; null in some tests
  ListenTable* listen_table = nullptr;  // this host's listening sockets; null in some tests
  CheckConfig check;                    // a copy: the detector may outlive a config reload
  std::string check_state_dir;          // STATE_DIR/checks/<id>; exists, owned by this check
  // The config of the service named in params.service, when the check names one (a copy, like
  // `check`); the running Service itself is looked up in `supervisor` at probe time.
  std::optional<ServiceConfig> service;
};

class Detector : public std::enable_shared_from_this<Detector> {
 public:
  virtual ~Detector() = default;
  virtual Status Start(std::function<void()> wake) {
    (void)wake;
    return Status::OK();
  }
  virtual void Close(std::function<void()> closed) { closed(); }
  virtual void Probe(std::function<void(Observation)> done) = 0;
};

struct DetectorFactory {
  std::string mode;
  std::vector<ParamSpec> params;
  std::function<std::shared_ptr<Detector>(const DetectorEnv&)> make;
};

// The built-in detectors by mode id. Registration happens at static-init time; the registry
// refuses a second detector for the same mode (a build error worth crashing on).
class DetectorRegistry {
 public:
  static DetectorRegistry& Get();
  bool Register(DetectorFactory factory);
  const DetectorFactory* Find(std::string_view mode) const;
  // For the config loader: the params schema of a mode, or nullptr when none is built in.
  ParamSchemaLookup SchemaLookup() const;

 private:
  std::vector<DetectorFactory> factories_;
};

class FsWatch;

// For detectors of a supervised service: watches its status file (when it has one) so that each
// change the service writes wakes a probe at once. Leaves `*watch` empty when there is nothing
// to watch; a watch that cannot start is an IOError (the poll still covers it).
Status WatchServiceStatus(const DetectorEnv& env, std::function<void()> wake,
                          std::unique_ptr<FsWatch>* watch);

// The name of the supervised service that listens on `url`'s loopback port while that service
// is still starting (or "" when there is none): a probe refused by an endpoint whose server is
// on its way up says nothing yet, so detectors answer Unknown instead of opening an incident.
std::string ServiceStartingAt(const DetectorEnv& env, const std::string& url);

// The file in a check's state folder that says its playbook degraded a feature of its service
// (playbooks write it beside the flags change, and remove it when they re-enable the feature).
inline constexpr const char* kDegradedMarker = "degraded-feature";

// Whether `feature` is degraded in the service's flags (listed in degraded_features, or with
// `flag` set, that boolean flag is true, e.g. offline_mode), and whether this check's playbook
// did it (its marker exists too). Blocking reads: call it on the thread pool. Playbooks get
// the same answer from guardian.service.degraded.
struct DegradedState {
  bool degraded = false;
  bool by_this_check = false;
};
DegradedState ReadDegraded(const std::string& check_state_dir, const std::string& flags_file,
                           const std::string& feature, const std::string& flag = "");

// The general checks' remedy params (`on_fail`, `on_fail_timeout_ms`, `verify_ms`: what the
// `exec` playbook runs and how long it waits), appended to `specs`.
std::vector<ParamSpec> WithRemedyParams(std::vector<ParamSpec> specs);

#define GUARDIAN_REGISTER_DETECTOR(ident, ...)            \
  [[maybe_unused]] static const bool ident##_registered = \
      ::guardian::DetectorRegistry::Get().Register(__VA_ARGS__)

}  // namespace guardian
