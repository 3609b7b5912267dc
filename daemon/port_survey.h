#pragma once
// PortSurvey: who holds a supervised service's TCP port, judged against the service. The
// port_conflict detector and guardian.service.port_owners() share it. A holder is "ours" when
// it is the service's current process or in its process group; "same_program" when it runs
// the service's executable without being ours, i.e. a stale instance of our own app that may
// be stopped; anything else is foreign and must never be touched.

#include <sys/types.h>

#include <string>
#include <vector>

#include "daemon/observation.h"
#include "daemon/proc_identity.h"
#include "daemon/status.h"

namespace guardian {

struct PortHolder {
  ProcessIdentity id;
  pid_t pgrp = 0;
  bool ours = false;
  bool same_program = false;
  std::string Describe() const;  // "pid 42 (…, /usr/bin/nc): another program"
};

struct PortSurvey {
  int port = 0;
  std::vector<PortHolder> holders;
  int unattributed = 0;  // listening sockets whose process this user cannot see
  // What the service's status file says of its last bind attempt, when it failed on this port.
  std::string bind_error;  // e.g. "EADDRINUSE"; empty when none
  pid_t bind_error_pid = 0;

  bool foreign_or_stale() const;
};

// Blocking (walks /proc and reads the status file): call on the pool. `service_pid` 0 when the
// service runs no process now; `status_file` may be empty.
Status SurveyPort(int port, pid_t service_pid, const std::string& service_exe,
                  const std::string& status_file, PortSurvey* out);

// The verdict for a service that should listen on survey.port: failing while someone else
// holds it (or the service's last bind failed on it and a holder is invisible to us), ok
// otherwise, with the evidence an operator needs.
Observation JudgePort(const PortSurvey& survey, const std::string& service, bool service_ready);

}  // namespace guardian
