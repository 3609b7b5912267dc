#pragma once
// RenderReportHtml: the MTTR report as one self-contained HTML page (`guardian report --html`,
// `chaos/run --html`). Charts are inline SVG written here; the page has no script and a
// Content-Security-Policy that forbids every fetch, so it shows the same offline, in a mail or a
// CI artifact. Everything that came from config, playbooks or the store is HTML-escaped.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace guardian {

struct ReportInput {
  // Incidents in the API's shape (GET /v1/incidents, steps included), newest first.
  nlohmann::json incidents = nlohmann::json::array();
  // GET /v1/mttr's document: {"modes": [{mode, count, target_ms, mttd_p50_ms, ...}]}.
  nlohmann::json mttr = nlohmann::json::object();
  // GET /v1/chaos-runs' runs, newest first: {id, started_at, ended_at, ok, seed, experiments,
  // failed, modes: {MODE: {count, ok, failed, target_ms, mttd_ms: {p50, p95, max},
  // mttr_ms: {p50, p95, max}}}}.
  nlohmann::json chaos_runs = nlohmann::json::array();
  int64_t generated_at_ms = 0;  // wall clock, shown in the header
  std::string version;          // guardiand's
  size_t max_timelines = 50;    // the newest incidents drawn as timelines
};

// Deterministic: the same input gives the same bytes.
std::string RenderReportHtml(const ReportInput& in);

}  // namespace guardian
