#include "daemon/api.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <memory>
#include <regex>

#include "daemon/modes.h"

namespace guardian {

namespace {

bool ParseInt(const std::string& text, int64_t lo, int64_t hi, int64_t* out) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < lo || v > hi) return false;
  *out = v;
  return true;
}

// A JSON body that must be an object (or empty, meaning {}).
bool ParseBody(const HttpRequest& req, nlohmann::json* out, std::string* why) {
  if (req.body.empty()) {
    *out = nlohmann::json::object();
    return true;
  }
  *out = nlohmann::json::parse(req.body, nullptr, false);
  if (out->is_discarded()) {
    *why = "request body is not valid JSON";
    return false;
  }
  if (!out->is_object()) {
    *why = "request body must be a JSON object";
    return false;
  }
  return true;
}

// Only the listed keys, each of the given JSON type.
bool CheckFields(const nlohmann::json& body,
                 const std::vector<std::pair<std::string, nlohmann::json::value_t>>& allowed,
                 std::string* why) {
  for (const auto& [key, value] : body.items()) {
    // Named captures: clang before 16 cannot capture a structured binding.
    auto it = std::find_if(allowed.begin(), allowed.end(),
                           [&name = key](const auto& a) { return a.first == name; });
    if (it == allowed.end()) {
      *why = "unknown field '" + key + "'";
      return false;
    }
    bool ok = value.type() == it->second ||
              (it->second == nlohmann::json::value_t::boolean && value.is_boolean());
    if (!ok) {
      *why = "field '" + key + "' has the wrong type";
      return false;
    }
  }
  return true;
}

int64_t Percentile(std::vector<int64_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  // Nearest rank: the smallest value with at least p of the samples at or below it.
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

}  // namespace

bool ParseChaosRun(const nlohmann::json& body, ChaosRunRecord* run, std::string* why) {
  using T = nlohmann::json::value_t;
  if (!CheckFields(body,
                   {{"format", T::string},
                    {"started_at", T::number_unsigned},
                    {"ended_at", T::number_unsigned},
                    {"ok", T::boolean},
                    {"seed", T::number_unsigned},
                    {"repeat", T::number_unsigned},
                    {"experiments", T::number_unsigned},
                    {"failed", T::number_unsigned},
                    {"skipped", T::number_unsigned},
                    {"modes", T::object}},
                   why))
    return false;
  for (const char* key : {"format", "started_at", "ended_at", "ok", "modes"}) {
    if (!body.contains(key)) {
      *why = std::string("missing field '") + key + "'";
      return false;
    }
  }
  if (body["format"] != kChaosRunFormat) {
    *why = "format must be \"" + std::string(kChaosRunFormat) + "\" (docs/chaos.md)";
    return false;
  }
  const nlohmann::json& modes = body["modes"];
  if (modes.size() > 100) {
    *why = "modes: at most 100";
    return false;
  }
  for (const auto& [mode, m] : modes.items()) {
    if (!m.is_object()) {
      *why = "modes." + mode + " must be an object";
      return false;
    }
  }
  run->started_at = body["started_at"].get<int64_t>();
  run->ended_at = body["ended_at"].get<int64_t>();
  run->ok = body["ok"].get<bool>();
  nlohmann::json summary = body;
  for (const char* key : {"started_at", "ended_at", "ok"}) summary.erase(key);
  run->summary = summary.dump();
  return true;
}

int HttpStatusFor(const Status& s) {
  switch (s.code()) {
    case Status::Code::kOk:
      return 200;
    case Status::Code::kInvalidArgument:
      return 400;
    case Status::Code::kNotFound:
      return 404;
    case Status::Code::kBusy:
      return 409;
    case Status::Code::kPermissionDenied:
      return 403;
    case Status::Code::kAborted:
      return 503;
    default:
      return 500;
  }
}

Status ParseIncidentFilter(const std::map<std::string, std::string>& query,
                           IncidentFilter* filter) {
  for (const auto& [key, value] : query) {
    if (key == "check") {
      // Empty would mean "every check" in the store: a typo must not widen the query.
      bool id_like =
          !value.empty() && value.size() <= 64 &&
          std::all_of(value.begin(), value.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
          });
      if (!id_like) {
        return Status::InvalidArgument("check: expected a check id ([a-z0-9_-]+), got '" + value +
                                       "'");
      }
      filter->check_id = value;
    } else if (key == "mode") {
      if (!FindMode(value)) return Status::InvalidArgument("mode: unknown mode '" + value + "'");
      filter->mode = value;
    } else if (key == "state") {
      static const char* kStates[] = {kStateOpen, kStateRunning, kStateWaiting, kStateResolved,
                                      kStateEscalated};
      if (std::none_of(std::begin(kStates), std::end(kStates),
                       [&v = value](const char* s) { return v == s; })) {
        return Status::InvalidArgument(
            "state: must be open, running, waiting, resolved or escalated, got '" + value + "'");
      }
      filter->state = value;
    } else if (key == "since") {
      if (!ParseInt(value, 0, INT64_MAX, &filter->since)) {
        return Status::InvalidArgument("since: expected milliseconds since the epoch, got '" +
                                       value + "'");
      }
    } else if (key == "limit") {
      int64_t limit = 0;
      if (!ParseInt(value, 1, 10'000, &limit)) {
        return Status::InvalidArgument("limit: expected 1..10000, got '" + value + "'");
      }
      filter->limit = static_cast<int>(limit);
    } else {
      return Status::InvalidArgument("unknown parameter '" + key +
                                     "' (known: check, mode, state, since, limit)");
    }
  }
  return Status::OK();
}

std::map<std::string, int64_t> MttrTargets(const Config& config) {
  std::map<std::string, int64_t> t;
  for (const auto& c : config.checks) {
    auto it = t.find(c.mode);
    if (it == t.end() || c.target_ms < it->second) t[c.mode] = c.target_ms;
  }
  return t;
}

nlohmann::json MttrReport(const std::vector<RecoveryTime>& times,
                          const std::map<std::string, int64_t>& targets) {
  struct Acc {
    std::vector<int64_t> mttr, mttd;
    int64_t over = 0;
    int64_t recorded_target = 0;  // the largest an incident was recorded with
  };
  std::map<std::string, Acc> by_mode;
  for (const auto& [mode, target] : targets) by_mode[mode];
  for (const auto& t : times) {
    Acc& a = by_mode[t.mode];
    a.mttr.push_back(t.mttr_ms);
    a.mttd.push_back(t.mttd_ms);
    // Each incident is judged against the target it was promised (its within_target).
    if (t.mttr_ms > t.target_ms) a.over++;
    a.recorded_target = std::max(a.recorded_target, t.target_ms);
  }
  nlohmann::json modes = nlohmann::json::array();
  for (const auto& [mode, a] : by_mode) {
    int64_t target = 0;
    if (auto it = targets.find(mode); it != targets.end()) {
      target = it->second;
    } else if (const ModeInfo* m = FindMode(mode)) {
      target = m->target_ms;
    } else {
      target = a.recorded_target;  // a mode this build does not know: what it was promised
    }
    nlohmann::json row = {{"mode", mode},
                          {"count", a.mttr.size()},
                          {"target_ms", target},
                          {"over_target_count", a.over}};
    if (a.mttr.empty()) {
      for (const char* k : {"mttr_p50_ms", "mttr_p95_ms", "mttr_max_ms", "mttd_p50_ms",
                            "mttd_p95_ms", "mttd_max_ms"})
        row[k] = nullptr;
      row["over_target"] = false;
    } else {
      row["mttr_p50_ms"] = Percentile(a.mttr, 0.50);
      row["mttr_p95_ms"] = Percentile(a.mttr, 0.95);
      row["mttr_max_ms"] = *std::max_element(a.mttr.begin(), a.mttr.end());
      row["mttd_p50_ms"] = Percentile(a.mttd, 0.50);
      row["mttd_p95_ms"] = Percentile(a.mttd, 0.95);
      row["mttd_max_ms"] = *std::max_element(a.mttd.begin(), a.mttd.end());
      // The promise is per mode: flagged when the p95 misses the target.
      row["over_target"] = row["mttr_p95_ms"].get<int64_t>() > target;
    }
    modes.push_back(row);
  }
  return {{"modes", modes}};
}

const HttpResponse& PassCache::Get(uint64_t pass, const std::function<HttpResponse()>& build) {
  if (!valid_ || pass_ != pass) {
    response_ = build();
    if (!response_.shared_body) {
      response_.shared_body = std::make_shared<const std::string>(std::move(response_.body));
      response_.body.clear();
    }
    pass_ = pass;
    valid_ = true;
  }
  return response_;
}

void Api::AnswerFromStore(std::function<Status(Store&, HttpResponse*)> build, Responder respond) {
  // Built and serialized on the store thread: a hundred incidents with their steps take
  // milliseconds, which the loop must not spend. The loop only hands the bytes over.
  auto out = std::make_shared<HttpResponse>();
  backend_.store([build, out](Store& st) { return build(st, out.get()); },
                 [out, respond](Status s) {
                   if (!s.ok()) return respond(ErrorResponse(500, "store: " + s.message()));
                   respond(std::move(*out));
                 });
}

void Api::Handle(const HttpRequest& req, Responder respond) {
  const std::string& p = req.path;
  auto method_is = [&](const char* m) { return req.method == m; };
  auto wrong_method = [&](const char* allowed) {
    respond(
        ErrorResponse(405, req.method + " " + p + ": method not allowed (use " + allowed + ")"));
  };
  auto fail = [&](const Status& s) { respond(ErrorResponse(HttpStatusFor(s), s.message())); };
  // Parameters only where documented; a typo must not silently widen a query.
  if (req.method != "GET") {
    status_cache_.Invalidate();
    metrics_cache_.Invalidate();
  }
  if (!req.query.empty() && p != "/v1/incidents" && p != "/v1/mttr" && p != "/v1/chaos-runs") {
    return respond(ErrorResponse(400, p + ": takes no query parameters"));
  }

  if (p == "/v1/health") {
    if (!method_is("GET")) return wrong_method("GET");
    return respond(JsonResponse(200, backend_.health()));
  }
  if (p == "/v1/status") {
    if (!method_is("GET")) return wrong_method("GET");
    return respond(
        status_cache_.Get(req.pass, [this] { return JsonResponse(200, backend_.status()); }));
  }
  if (p == "/metrics") {
    if (!method_is("GET")) return wrong_method("GET");
    return respond(metrics_cache_.Get(req.pass, [this] {
      return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", backend_.metrics(),
                          nullptr};
    }));
  }
  if (p == "/v1/incidents") {
    if (!method_is("GET")) return wrong_method("GET");
    IncidentFilter filter;
    Status s = ParseIncidentFilter(req.query, &filter);
    if (!s.ok()) return fail(s);
    return AnswerFromStore(
        [filter](Store& st, HttpResponse* out) {
          std::vector<IncidentRecord> list;
          Status s = st.ListIncidents(filter, &list);
          if (!s.ok()) return s;
          nlohmann::json arr = nlohmann::json::array();
          for (const auto& r : list) arr.push_back(r.ToJson());
          *out = JsonResponse(200, {{"incidents", std::move(arr)}});
          return Status::OK();
        },
        respond);
  }
  static const std::regex kIncident("^/v1/incidents/([0-9]{1,18})$");
  std::smatch m;
  if (std::regex_match(p, m, kIncident)) {
    if (!method_is("GET")) return wrong_method("GET");
    int64_t id = std::stoll(m[1].str());
    return AnswerFromStore(
        [id](Store& st, HttpResponse* out) {
          std::optional<IncidentRecord> rec;
          Status s = st.GetIncident(id, &rec);
          if (!s.ok()) return s;
          *out = rec ? JsonResponse(200, rec->ToJson())
                     : ErrorResponse(404, "no incident " + std::to_string(id));
          return Status::OK();
        },
        respond);
  }
  if (p.rfind("/v1/incidents/", 0) == 0) {
    return respond(ErrorResponse(400, "incident id must be a positive integer"));
  }
  if (p == "/v1/mttr") {
    if (!method_is("GET")) return wrong_method("GET");
    int64_t since = 0;
    for (const auto& [k, v] : req.query) {
      if (k != "since" || !ParseInt(v, 0, INT64_MAX, &since)) {
        return respond(ErrorResponse(400, k == "since"
                                              ? "since: expected milliseconds"
                                              : "unknown parameter '" + k + "' (known: since)"));
      }
    }
    return AnswerFromStore(
        [since, targets = backend_.targets()](Store& st, HttpResponse* out) {
          std::vector<RecoveryTime> times;
          Status s = st.RecoveryTimes(since, &times);
          if (s.ok()) *out = JsonResponse(200, MttrReport(times, targets));
          return s;
        },
        respond);
  }
  if (p == "/v1/chaos-runs") {
    if (method_is("POST")) {
      ChaosRunRecord run;
      std::string why;
      nlohmann::json body;
      if (!ParseBody(req, &body, &why) || !ParseChaosRun(body, &run, &why))
        return respond(ErrorResponse(400, why));
      run.stored_at = backend_.now_ms ? backend_.now_ms() : 0;
      auto stored = std::make_shared<ChaosRunRecord>(std::move(run));
      return AnswerFromStore(
          [stored](Store& st, HttpResponse* out) {
            Status s = st.AddChaosRun(stored.get());
            if (s.ok()) *out = JsonResponse(201, stored->ToJson());
            return s;
          },
          respond);
    }
    if (!method_is("GET")) return wrong_method("GET, POST");
    int64_t limit = 100;
    for (const auto& [k, v] : req.query) {
      if (k != "limit" || !ParseInt(v, 1, kChaosRunsKept, &limit)) {
        return respond(
            ErrorResponse(400, k == "limit" ? "limit: expected 1.." + std::to_string(kChaosRunsKept)
                                            : "unknown parameter '" + k + "' (known: limit)"));
      }
    }
    return AnswerFromStore(
        [limit](Store& st, HttpResponse* out) {
          std::vector<ChaosRunRecord> runs;
          Status s = st.ChaosRuns(static_cast<int>(limit), &runs);
          if (!s.ok()) return s;
          nlohmann::json arr = nlohmann::json::array();
          for (const auto& r : runs) arr.push_back(r.ToJson());
          *out = JsonResponse(200, {{"runs", std::move(arr)}});
          return Status::OK();
        },
        respond);
  }
  if (p == "/v1/fleet") {
    if (!method_is("GET")) return wrong_method("GET");
    if (!backend_.fleet) return respond(ErrorResponse(404, "fleet mode is off"));
    backend_.fleet([respond](Status s, nlohmann::json view) {
      if (!s.ok()) return respond(ErrorResponse(HttpStatusFor(s), s.message()));
      respond(JsonResponse(200, view));
    });
    return;
  }
  if (p == "/v1/reload") {
    if (!method_is("POST")) return wrong_method("POST");
    nlohmann::json body;
    std::string why;
    if (!ParseBody(req, &body, &why) || !CheckFields(body, {}, &why)) {
      return respond(ErrorResponse(400, why));
    }
    backend_.reload([respond](Status s, nlohmann::json result) {
      if (!s.ok()) {
        nlohmann::json body = {{"error", {{"status", 422}, {"message", s.message()}}}};
        if (!result.is_null()) body["error"]["errors"] = result;
        return respond(JsonResponse(422, body));
      }
      respond(JsonResponse(200, result));
    });
    return;
  }
  if (p == "/v1/debug/stall" && backend_.debug_stall) {
    if (!method_is("POST")) return wrong_method("POST");
    nlohmann::json body;
    std::string why;
    using T = nlohmann::json::value_t;
    if (!ParseBody(req, &body, &why) ||
        !CheckFields(body, {{"loop_ms", T::number_unsigned}, {"store_ms", T::number_unsigned}},
                     &why)) {
      return respond(ErrorResponse(400, why));
    }
    if (body.size() != 1) return respond(ErrorResponse(400, "give one of loop_ms, store_ms"));
    std::string where = body.begin().key() == "loop_ms" ? "loop" : "store";
    int64_t ms = body.begin()->get<int64_t>();
    if (ms < 1 || ms > 60000) return respond(ErrorResponse(400, "ms must be 1..60000"));
    Status s = backend_.debug_stall(where, ms);
    if (!s.ok()) return fail(s);
    return respond(JsonResponse(200, {{"stalled", where}, {"ms", ms}}));
  }
  if (p == "/v1/debug/store-fault" && backend_.debug_store_fault) {
    if (!method_is("POST")) return wrong_method("POST");
    nlohmann::json body;
    std::string why;
    using T = nlohmann::json::value_t;
    if (!ParseBody(req, &body, &why) ||
        !CheckFields(
            body,
            {{"fault", T::string}, {"after", T::number_unsigned}, {"count", T::number_unsigned}},
            &why)) {
      return respond(ErrorResponse(400, why));
    }
    if (!body.contains("fault")) return respond(ErrorResponse(400, "field 'fault' is required"));
    std::string fault = body["fault"].get<std::string>();
    int64_t after = body.value("after", int64_t{0});
    int64_t count = body.contains("count") ? body["count"].get<int64_t>() : -1;
    nlohmann::json out;
    Status s = backend_.debug_store_fault(fault, after, count, &out);
    if (!s.ok()) return fail(s);
    return respond(JsonResponse(200, out));
  }
  static const std::regex kCheckAction("^/v1/checks/([a-z0-9_-]{1,64})/(hold|release|run)$");
  if (std::regex_match(p, m, kCheckAction)) {
    if (!method_is("POST")) return wrong_method("POST");
    std::string check = m[1].str(), action = m[2].str();
    nlohmann::json body;
    std::string why;
    if (!ParseBody(req, &body, &why)) return respond(ErrorResponse(400, why));
    using T = nlohmann::json::value_t;
    if (action == "hold") {
      if (!CheckFields(body, {{"reason", T::string}}, &why))
        return respond(ErrorResponse(400, why));
      std::string reason = body.value("reason", "");
      if (reason.empty()) return respond(ErrorResponse(400, "hold needs a non-empty \"reason\""));
      if (reason.size() > 1024) return respond(ErrorResponse(400, "reason over 1024 bytes"));
      Status s = backend_.hold(check, reason);
      if (!s.ok()) return fail(s);
      return respond(JsonResponse(200, {{"check", check}, {"held", true}, {"reason", reason}}));
    }
    if (action == "release") {
      if (!CheckFields(body, {}, &why)) return respond(ErrorResponse(400, why));
      Status s = backend_.release(check);
      if (!s.ok()) return fail(s);
      return respond(JsonResponse(200, {{"check", check}, {"held", false}}));
    }
    if (!CheckFields(body, {{"dry_run", T::boolean}, {"force", T::boolean}}, &why)) {
      return respond(ErrorResponse(400, why));
    }
    backend_.run(check, body.value("dry_run", false), body.value("force", false),
                 [respond](Status s, nlohmann::json result) {
                   if (!s.ok()) return respond(ErrorResponse(HttpStatusFor(s), s.message()));
                   respond(JsonResponse(200, result));
                 });
    return;
  }
  if (p.rfind("/v1/checks/", 0) == 0) {
    return respond(ErrorResponse(404, p + ": expected /v1/checks/{id}/hold|release|run"));
  }
  respond(ErrorResponse(404, "no such endpoint: " + p));
}

}  // namespace guardian
