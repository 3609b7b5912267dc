// Fuzzes the API's request handler, Api::Handle, on requests made from text: a first line
// "METHOD PATH[?QUERY]" (query as k=v&k=v, %XX-decoded), then the body.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "daemon/api.h"
#include "daemon/http_server.h"
#include "daemon/store.h"

namespace {

using guardian::Status;
using nlohmann::json;

guardian::HttpRequest ParseRequest(std::string_view text) {
  guardian::HttpRequest req;
  const size_t eol = std::min(text.find('\n'), text.size());
  std::string_view line = text.substr(0, eol);
  req.body = std::string(text.substr(std::min(eol + 1, text.size())));
  const size_t space = std::min(line.find(' '), line.size());
  req.method = std::string(line.substr(0, space));
  std::string_view target = line.substr(std::min(space + 1, line.size()));
  const size_t qmark = std::min(target.find('?'), target.size());
  // Decoded as the server decodes them.
  req.path = guardian::UrlDecode(target.substr(0, qmark), false);
  req.query = guardian::DecodeQuery(target.substr(std::min(qmark + 1, target.size())));
  req.content_type = "application/json";
  return req;
}

// A backend that answers at once: the store is a fresh in-memory database per input (so an
// input's outcome depends on nothing before it), opened only when a request reaches it.
guardian::ApiBackend Backend(std::unique_ptr<guardian::Store>* store) {
  guardian::ApiBackend b;
  b.health = [] { return json{{"ok", true}}; };
  b.status = [] { return json{{"checks", json::array()}, {"mode", "act"}}; };
  b.metrics = [] { return std::string("guardian_up 1\n"); };
  b.store = [store](std::function<Status(guardian::Store&)> work,
                    std::function<void(Status)> done) {
    if (!*store) {
      Status s = guardian::Store::Open(":memory:", false, store);
      if (!s.ok()) return done(s);
    }
    done(work(**store));
  };
  b.hold = [](const std::string&, const std::string&) { return Status::OK(); };
  b.release = [](const std::string&) { return Status::OK(); };
  b.run = [](const std::string& check, bool dry_run, bool force,
             std::function<void(Status, json)> done) {
    done(Status::OK(), json{{"check", check}, {"dry_run", dry_run}, {"force", force}});
  };
  b.reload = [](std::function<void(Status, json)> done) {
    done(Status::OK(), json{{"reloaded", true}});
  };
  b.targets = [] { return std::map<std::string, int64_t>{{"missing_config", 10'000}}; };
  b.now_ms = [] { return int64_t{1'795'508'700'000}; };
  return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<guardian::Store> store;
  guardian::Api api(Backend(&store));
  guardian::HttpRequest req =
      ParseRequest(std::string_view(reinterpret_cast<const char*>(data), size));
  // Without a server behind it the Responder drops the answer; building the answer is what
  // is under test. The same request twice in one pass also exercises the pass caches.
  req.pass = 1;
  api.Handle(req, guardian::Responder(std::weak_ptr<guardian::Responder::Slot>()));
  api.Handle(req, guardian::Responder(std::weak_ptr<guardian::Responder::Slot>()));
  return 0;
}
