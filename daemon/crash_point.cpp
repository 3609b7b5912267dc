#include "daemon/crash_point.h"

#ifdef GUARDIAN_TEST_HOOKS

#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>

namespace guardian {
namespace {

struct Armed {
  std::string name;  // empty: nothing armed
  long at = 1;
  long passes = 0;  // guarded by mu
  std::mutex mu;
};

Armed& Get() {
  static Armed* armed = [] {
    auto* a = new Armed;  // never freed: a store write may pass a point during exit
    if (const char* env = std::getenv("GUARDIAN_CRASH_AT")) {
      std::string spec = env;
      size_t hash = spec.find('#');
      a->name = spec.substr(0, hash);
      if (hash != std::string::npos) a->at = std::max(1L, std::atol(spec.c_str() + hash + 1));
    }
    return a;
  }();
  return *armed;
}

bool Matches(const std::string& name, std::string_view a, std::string_view b, std::string_view c) {
  std::string joined(a);
  for (std::string_view part : {b, c}) {
    if (part.empty()) continue;
    joined += ':';
    joined += part;
  }
  return joined == name;
}

}  // namespace

bool CrashPointDue(std::string_view a, std::string_view b, std::string_view c) {
  Armed& armed = Get();
  if (armed.name.empty() || !Matches(armed.name, a, b, c)) return false;
  std::lock_guard<std::mutex> lock(armed.mu);
  return ++armed.passes == armed.at;
}

void CrashNow() {
  Armed& armed = Get();
  spdlog::critical("crash point {}#{}: killing guardiand on purpose (GUARDIAN_CRASH_AT)",
                   armed.name, armed.at);
  spdlog::default_logger()->flush();
  ::raise(SIGKILL);
  std::abort();  // not reached
}

}  // namespace guardian

#endif
