#include "daemon/port_survey.h"

#include <nlohmann/json.hpp>

#include "daemon/file_util.h"
#include "daemon/port_owner.h"

namespace guardian {

std::string PortHolder::Describe() const {
  return id.ToString() + (ours           ? ": the service itself"
                          : same_program ? ": a stale instance of the service's own program"
                                         : ": another program");
}

bool PortSurvey::foreign_or_stale() const {
  for (const auto& h : holders) {
    if (!h.ours) return true;
  }
  return false;
}

Status SurveyPort(int port, pid_t service_pid, const std::string& service_exe,
                  const std::string& status_file, PortSurvey* out) {
  *out = PortSurvey{};
  out->port = port;
  std::vector<ProcessIdentity> ids;
  Status s = FindPortOwners(port, &ids, &out->unattributed);
  if (!s.ok()) return s;
  for (const auto& id : ids) {
    PortHolder h;
    h.id = id;
    ProcStat st;
    if (ReadProcStat(id.pid, &st).ok()) h.pgrp = st.pgrp;
    h.ours = service_pid > 0 && (id.pid == service_pid || h.pgrp == service_pid);
    h.same_program = !h.ours && !service_exe.empty() && id.exe == service_exe;
    out->holders.push_back(h);
  }
  nlohmann::json doc;
  if (!status_file.empty() && ReadJsonObject(status_file, 1 << 20, &doc).ok() &&
      doc.contains("bind") && doc["bind"].is_object()) {
    const auto& b = doc["bind"];
    if (b.value("port", 0) == port) {
      out->bind_error = b.value("error", std::string("bind failed"));
      out->bind_error_pid = doc.value("pid", 0);
    }
  }
  return Status::OK();
}

Observation JudgePort(const PortSurvey& survey, const std::string& service, bool service_ready) {
  std::string port = std::to_string(survey.port);
  std::string others;
  for (const auto& h : survey.holders) {
    if (h.ours) continue;
    others += (others.empty() ? "" : "; ") + h.Describe();
  }
  if (!others.empty()) {
    // Held by someone else, whether or not the service still runs: it cannot serve there.
    return Observation::Failing("port " + port + " of service " + service + " is held by " +
                                others);
  }
  if (!service_ready && !survey.bind_error.empty() && survey.unattributed > 0) {
    return Observation::Failing(service + " could not bind port " + port + " (" +
                                survey.bind_error + ") and " + std::to_string(survey.unattributed) +
                                " listening socket(s) on it belong to processes this user cannot "
                                "see");
  }
  if (survey.holders.empty())
    return Observation::Ok("port " + port + " is free; " + service + " will bind it");
  return Observation::Ok("port " + port + " is held by " + service);
}

}  // namespace guardian
