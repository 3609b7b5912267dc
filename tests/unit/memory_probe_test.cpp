// Memory figures from the kernel's own text formats, and how they are judged.
#include "daemon/memory_probe.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace guardian {
namespace {

constexpr uint64_t kMiB = 1 << 20;

std::string TempDir() {
  std::string d =
      std::filesystem::temp_directory_path() / ("memory_probe_test." + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace

TEST_CASE("meminfo: MemTotal and MemAvailable in kB") {
  MemInfo m;
  REQUIRE(ParseMemInfo(
              "MemTotal:        2048000 kB\nMemFree:  10 kB\nMemAvailable:     512000 kB\n", &m)
              .ok());
  CHECK(m.total_bytes == 2048000ull * 1024);
  CHECK(m.available_bytes == 512000ull * 1024);
  CHECK(!ParseMemInfo("MemTotal: 1 kB\n", &m).ok());  // an old kernel without MemAvailable
  REQUIRE(ReadMemInfo(&m).ok());                      // this machine's
  CHECK(m.total_bytes > 0);
}

TEST_CASE("PSI: the some and full lines") {
  Psi p;
  REQUIRE(ParsePsi("some avg10=12.50 avg60=3.00 avg300=0.50 total=987654\n"
                   "full avg10=4.25 avg60=1.00 avg300=0.10 total=12345\n",
                   &p)
              .ok());
  CHECK(p.some_avg10 == doctest::Approx(12.5));
  CHECK(p.full_avg10 == doctest::Approx(4.25));
  CHECK(p.some_total_us == 987654);
  CHECK(!ParsePsi("garbage\n", &p).ok());
}

TEST_CASE("RSS of a process tree: this process counts, a gone one is NotFound") {
  CHECK(ParseVmRss("Name:\tx\nVmRSS:\t  2048 kB\n") == 2048 * 1024);
  CHECK(ParseVmRss("Name:\tkthread\n") == 0);
  uint64_t rss = 0;
  REQUIRE(ReadTreeRss(::getpid(), &rss).ok());
  CHECK(rss > kMiB);
  CHECK(ReadTreeRss(0x3fffffff, &rss).code() == Status::Code::kNotFound);
}

TEST_CASE("OOM kills from a v2 memory.events or a v1 memory.oom_control") {
  std::string d = TempDir();
  uint64_t kills = 0;
  CHECK(ReadOomKills(d, &kills).code() == Status::Code::kNotFound);
  std::ofstream(d + "/memory.oom_control") << "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
  REQUIRE(ReadOomKills(d, &kills).ok());
  CHECK(kills == 3);
  std::ofstream(d + "/memory.events") << "low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n";
  REQUIRE(ReadOomKills(d, &kills).ok());  // v2's file is read first
  CHECK(kills == 2);
  std::filesystem::remove_all(d);
}

TEST_CASE("judge: the service over its RSS limit") {
  MemorySample s;
  s.have_rss = true;
  s.rss_bytes = 300 * kMiB;
  MemoryLimits l;
  l.rss_limit_bytes = 256 * kMiB;
  MemoryVerdict v = JudgeMemory(s, l);
  CHECK(v.service_over);
  CHECK(!v.system_short);
  REQUIRE(v.reasons.size() == 1);
  CHECK(v.reasons[0] == "the service's RSS 300 MiB is over its limit 256 MiB");
  s.rss_bytes = 200 * kMiB;
  CHECK(!JudgeMemory(s, l).failing());
  CHECK(JudgeMemory(s, l).figures == "RSS 200 MiB of 256 MiB");
}

TEST_CASE("judge: the system short by bytes, by percent, or by PSI; limits at 0 are off") {
  MemorySample s;
  s.have_meminfo = true;
  s.mem.total_bytes = 1000 * kMiB;
  s.mem.available_bytes = 50 * kMiB;  // 5%
  s.have_psi = true;
  s.psi.some_avg10 = 30;
  MemoryLimits off;
  CHECK(!JudgeMemory(s, off).failing());
  MemoryLimits bytes;
  bytes.min_available_bytes = 100 * kMiB;
  CHECK(JudgeMemory(s, bytes).system_short);
  MemoryLimits pct;
  pct.min_available_percent = 4;
  CHECK(!JudgeMemory(s, pct).failing());
  pct.min_available_percent = 10;
  CHECK(JudgeMemory(s, pct).system_short);
  MemoryLimits psi;
  psi.psi_some_avg10 = 20;
  MemoryVerdict v = JudgeMemory(s, psi);
  CHECK(v.system_short);
  CHECK(!v.service_over);
  CHECK(v.reasons[0].find("stalled on memory 30%") != std::string::npos);
}

TEST_CASE("judge: an unhandled OOM kill and a fired PSI trigger fail whatever the figures") {
  MemorySample s;
  s.new_oom_kills = 1;
  CHECK(JudgeMemory(s, MemoryLimits{}).service_over);
  MemorySample t;
  t.psi_triggered = true;
  CHECK(JudgeMemory(t, MemoryLimits{}).system_short);
}

}  // namespace guardian
