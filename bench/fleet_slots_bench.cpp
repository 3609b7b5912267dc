// fleet_slots_bench: how long taking a fleet slot takes when many hosts ask at once. N clients
// (each a FleetMember with its own lease and etcd connection, plus its FleetSlots, all on one
// loop) join one fleet on the given etcd endpoints, then:
//   free:    every client asks at once for a mode whose max_concurrent is N, so nobody waits
//            for another's turn: the latency is etcd's (create the key, read the line) under N
//            concurrent requests. Each client gives its slot back; `rounds` times.
//   handoff: every client asks at once for a mode with max_concurrent 1 and gives the slot back
//            as soon as it has it: the latency is from one client's release to the next one's
//            grant (the delete, the watch event, the re-read).
// Prints one JSON object with the samples' p50, p99 and max per phase. Run it through
// bench/fleet_slots.py, which starts a 3-member etcd cluster on loopback.

#include <spdlog/spdlog.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "daemon/clock.h"
#include "daemon/fleet_member.h"
#include "daemon/fleet_slots.h"

using guardian::FleetConfig;
using guardian::FleetMember;
using guardian::FleetSlots;
using guardian::Status;

namespace {

struct Client {
  std::unique_ptr<FleetMember> member;
  std::unique_ptr<FleetSlots> slots;
};

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

nlohmann::json Stats(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    size_t i = static_cast<size_t>(q * static_cast<double>(ms.size() - 1) + 0.5);
    return ms[std::min(i, ms.size() - 1)];
  };
  return {
      {"samples", ms.size()}, {"p50_ms", at(0.50)}, {"p99_ms", at(0.99)}, {"max_ms", ms.back()}};
}

void RunUntil(uv_loop_t* loop, const std::function<bool()>& done, int64_t deadline_us) {
  while (!done()) {
    if (NowUs() > deadline_us) {
      std::fprintf(stderr, "fleet_slots_bench: timed out\n");
      std::exit(1);
    }
    uv_run(loop, UV_RUN_ONCE);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: fleet_slots_bench ENDPOINT[,ENDPOINT...] STATE_DIR [CLIENTS] [ROUNDS]\n");
    return 2;
  }
  std::vector<std::string> endpoints;
  for (std::string rest = argv[1]; !rest.empty();) {
    auto comma = rest.find(',');
    endpoints.push_back(rest.substr(0, comma));
    rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
  }
  std::string dir = argv[2];
  int n = argc > 3 ? std::atoi(argv[3]) : 100;
  int rounds = argc > 4 ? std::atoi(argv[4]) : 5;
  spdlog::set_level(spdlog::level::warn);  // stdout carries the result only
  uv_loop_t loop;
  uv_loop_init(&loop);
  int64_t deadline = NowUs() + 300'000'000;

  std::vector<Client> clients(n);
  for (int i = 0; i < n; ++i) {
    FleetConfig c;
    c.enabled = true;
    c.name = "bench";
    c.host = "h" + std::to_string(i);
    c.endpoints = endpoints;
    c.lease_ttl_s = 10;
    c.request_timeout_ms = 2500;
    c.budgets["free"] = {n, 0};
    c.budgets["handoff"] = {1, 0};
    clients[i].member = std::make_unique<FleetMember>(&loop, c, dir + "/lease-" + c.host, nullptr);
    clients[i].slots = std::make_unique<FleetSlots>(clients[i].member.get());
    clients[i].member->Start();
  }
  RunUntil(
      &loop,
      [&] {
        for (auto& c : clients)
          if (c.member->state() != FleetMember::State::kConnected) return false;
        return true;
      },
      deadline);

  // free: everyone at once, nobody's turn to wait for.
  std::vector<double> free_ms;
  for (int r = 0; r < rounds; ++r) {
    int answered = 0, failed = 0;
    for (auto& c : clients) {
      int64_t asked = NowUs();
      c.slots->Acquire("free", "b", [&, asked](Status s) {
        ++answered;
        if (!s.ok()) ++failed;
        free_ms.push_back(static_cast<double>(NowUs() - asked) / 1000.0);
      });
    }
    RunUntil(
        &loop, [&] { return answered == n; }, deadline);
    if (failed) {
      std::fprintf(stderr, "fleet_slots_bench: %d of %d free slots refused\n", failed, n);
      return 1;
    }
    for (auto& c : clients) c.slots->Release("free", "b");
    // Let the deletes land before the next round asks again.
    int64_t settle = NowUs() + 300'000;
    RunUntil(
        &loop, [&] { return NowUs() > settle; }, deadline);
  }

  // handoff: one at a time; each gives the slot back as soon as it has it.
  std::vector<double> handoff_ms, wait_ms;
  for (int r = 0; r < std::max(1, rounds / 2); ++r) {
    int answered = 0;
    int64_t released_at = 0;
    for (auto& c : clients) {
      int64_t asked = NowUs();
      FleetSlots* slots = c.slots.get();
      slots->Acquire("handoff", "b", [&, asked, slots](Status s) {
        if (!s.ok()) {
          std::fprintf(stderr, "fleet_slots_bench: handoff refused: %s\n", s.message().c_str());
          std::exit(1);
        }
        int64_t now = NowUs();
        ++answered;
        wait_ms.push_back(static_cast<double>(now - asked) / 1000.0);
        if (released_at) handoff_ms.push_back(static_cast<double>(now - released_at) / 1000.0);
        released_at = NowUs();
        slots->Release("handoff", "b");
      });
    }
    RunUntil(
        &loop, [&] { return answered == n; }, deadline);
  }

  nlohmann::json out = {{"clients", n},
                        {"rounds", rounds},
                        {"endpoints", endpoints.size()},
                        {"free", Stats(free_ms)},
                        {"handoff", Stats(handoff_ms)},
                        {"handoff_total_wait", Stats(wait_ms)}};
  std::printf("%s\n", out.dump().c_str());

  for (auto& c : clients) c.slots.reset();
  int closed = 0;
  for (auto& c : clients) c.member->Close([&] { ++closed; });
  RunUntil(
      &loop, [&] { return closed == n; }, deadline);
  clients.clear();
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return 0;
}
