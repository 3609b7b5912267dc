// out_of_memory: a supervised service is over its RSS limit (its process tree, from /proc), the
// kernel OOM-killed a process in its memory cgroup, or the system is short of memory
// (MemAvailable under a floor, PSI memory pressure over a share, a PSI trigger fired). The
// status file wakes a probe when the app reports its memory; a PSI trigger, where the kernel
// accepts one, wakes it the moment tasks stall. An OOM kill stays failing until the service is
// ready again in low-memory mode (a flags write after the kill): the supervisor's restart alone
// would only run into the same wall. Low-memory mode this check's playbook turned on is left
// again (a failing observation the playbook answers by turning it off) once the memory has
// stayed healthy with room to spare (RSS at most 3/4 of its limit, no shortage, no pressure) for
// low_memory_exit_ms: the service does not stay crippled after the fault is gone.
#include <csignal>
#include <nlohmann/json.hpp>

#include "daemon/clock.h"
#include "daemon/file_util.h"
#include "daemon/fs_watch.h"
#include "daemon/memory_probe.h"
#include "daemon/psi_trigger.h"
#include "daemon/supervisor.h"
#include "daemon/work.h"
#include "detectors/detector.h"

namespace guardian {
namespace {

constexpr char kPsiFile[] = "/proc/pressure/memory";
// The evidence's start when low-memory mode should be left; the playbook matches it.
constexpr char kLowMemoryExitEvidence[] = "memory healthy in low-memory mode";

struct MemRead {
  MemorySample sample;
  bool have_kills = false;
  uint64_t kills = 0;
  std::string kills_problem;
  int64_t flags_seq = 0;
  bool low_memory = false;
  bool low_memory_ours = false;  // turned on by this check's playbook (its marker)
};

class OutOfMemoryDetector : public Detector {
 public:
  explicit OutOfMemoryDetector(const DetectorEnv& env) : env_(env) {
    const Params& p = env.check.params;
    service_ = ParamString(p, "service");
    limits_.rss_limit_bytes = static_cast<uint64_t>(ParamInt(p, "rss_limit_mb", 0)) << 20;
    limits_.min_available_bytes = static_cast<uint64_t>(ParamInt(p, "min_available_mb", 0)) << 20;
    limits_.min_available_percent = ParamNumber(p, "min_available_percent", 0);
    limits_.psi_some_avg10 = ParamNumber(p, "psi_some_avg10", 0);
    psi_stall_ms_ = ParamInt(p, "psi_stall_ms", 0);
    cgroup_ = ParamString(p, "cgroup", env.service ? env.service->cgroup : "");
    low_memory_exit_ms_ = ParamInt(p, "low_memory_exit_ms", 30000);
  }

  Status Start(std::function<void()> wake) override {
    if (limits_.rss_limit_bytes == 0 && limits_.min_available_bytes == 0 &&
        limits_.min_available_percent <= 0 && limits_.psi_some_avg10 <= 0 && psi_stall_ms_ <= 0 &&
        cgroup_.empty())
      return Status::InvalidArgument(
          "nothing to judge: set rss_limit_mb, min_available_mb, min_available_percent, "
          "psi_some_avg10, psi_stall_ms or a cgroup");
    if (psi_stall_ms_ > 0) {
      trigger_ = std::make_unique<PsiTrigger>(env_.loop);
      Status s = trigger_->Start(kPsiFile, psi_stall_ms_ * 1000, 1'000'000, [this, wake] {
        psi_fired_ = true;
        wake();
      });
      if (!s.ok()) {
        trigger_.reset();
        // Not fatal: psi_some_avg10 is still read at each probe.
        psi_note_ = "PSI trigger refused (" + s.message() + "), averages polled";
      } else {
        psi_note_ = "PSI trigger armed";
      }
    }
    return WatchServiceStatus(env_, std::move(wake), &watch_);
  }

  void Close(std::function<void()> closed) override {
    watch_.reset();
    trigger_.reset();
    closed();
  }

  void Probe(std::function<void(Observation)> done) override {
    Service* svc = env_.supervisor ? env_.supervisor->Find(service_) : nullptr;
    if (!svc) return done(Observation::Unknown("service " + service_ + " is not supervised"));
    ServiceSnapshot snap = svc->Snapshot();
    pid_t pid = snap.process.pid;
    auto r = std::make_shared<MemRead>();
    std::string cgroup = cgroup_;
    std::string flags_file = env_.service ? env_.service->flags_file : "";
    std::string dir = env_.check_state_dir;
    QueueWork(
        env_.loop,
        [r, pid, cgroup, flags_file, dir] {
          if (pid > 0) r->sample.have_rss = ReadTreeRss(pid, &r->sample.rss_bytes).ok();
          r->sample.have_meminfo = ReadMemInfo(&r->sample.mem).ok();
          r->sample.have_psi = ReadPsi(kPsiFile, &r->sample.psi).ok();
          if (!cgroup.empty()) {
            Status s = ReadOomKills(cgroup, &r->kills);
            r->have_kills = s.ok();
            if (!s.ok()) r->kills_problem = s.message();
          }
          nlohmann::json flags;
          if (!flags_file.empty() && ReadJsonObject(flags_file, 1 << 20, &flags).ok()) {
            if (flags.contains("seq") && flags["seq"].is_number_integer())
              r->flags_seq = flags["seq"].get<int64_t>();
            if (flags.contains("low_memory") && flags["low_memory"].is_boolean())
              r->low_memory = flags["low_memory"].get<bool>();
          }
          if (r->low_memory)
            r->low_memory_ours =
                ReadDegraded(dir, flags_file, "low_memory", "low_memory").by_this_check;
        },
        [this, weak = weak_from_this(), r, snap, done] {
          if (weak.expired()) return done(Observation::Unknown("check closed"));
          done(Judge(*r, snap));
        });
  }

 private:
  Observation Judge(MemRead& r, const ServiceSnapshot& snap) {
    if (r.have_kills) {
      // The counter's value when first read is history, not news.
      if (!kills_known_) {
        kills_known_ = true;
        kills_seen_ = r.kills;
      } else if (r.kills > kills_seen_) {
        pending_kills_ += r.kills - kills_seen_;
        kills_seen_ = r.kills;
        flags_seq_at_kill_ = r.flags_seq;
        // The killed process's exit (SIGKILL, unasked, since the last probe) dates the kill.
        const auto& exit = snap.last_exit;
        killed_at_ = exit && exit->signal == SIGKILL && !exit->asked && exit->at > last_probe_at_
                         ? exit->at
                         : 0;
      }
    }
    last_probe_at_ = SystemClock::Get()->WallMs();
    // Handled once the service runs again, ready, in low-memory mode asked for after the kill.
    if (pending_kills_ > 0 && snap.state == ServiceState::kReady && r.low_memory &&
        r.flags_seq > flags_seq_at_kill_)
      pending_kills_ = 0;
    r.sample.new_oom_kills = pending_kills_;
    r.sample.psi_triggered = psi_fired_;
    psi_fired_ = false;
    MemoryVerdict v = JudgeMemory(r.sample, limits_);
    std::string notes = v.figures;
    if (!psi_note_.empty()) notes += "; " + psi_note_;
    if (!cgroup_.empty())
      notes += r.have_kills ? "; cgroup OOM kills " + std::to_string(r.kills)
                            : "; cgroup unreadable: " + r.kills_problem;
    if (r.low_memory) notes += "; service in low-memory mode";
    if (!v.failing()) return JudgeLowMemoryExit(r, notes);
    healthy_since_ = -1;
    std::string why;
    for (size_t i = 0; i < v.reasons.size(); ++i) why += (i ? "; " : "") + v.reasons[i];
    Observation failing = Observation::Failing(why + " (" + notes + ")");
    if (pending_kills_ > 0) failing.began_at_ms = killed_at_;
    return failing;
  }

  // Healthy: Ok, unless low-memory mode (ours) has had room to spare for low_memory_exit_ms.
  Observation JudgeLowMemoryExit(const MemRead& r, const std::string& notes) {
    int64_t now = SystemClock::Get()->MonoMs();
    // Room: at most 3/4 of the limit (a margin, so leaving does not put it straight back over).
    bool room =
        r.sample.have_rss && !r.sample.psi_triggered &&
        (limits_.rss_limit_bytes == 0 || r.sample.rss_bytes * 4 <= limits_.rss_limit_bytes * 3);
    // Counted from the last flags change too: the incident that turned the mode on is still
    // verifying its heal then, and must not see this as its failure.
    bool flags_changed = r.flags_seq != exit_flags_seq_;
    exit_flags_seq_ = r.flags_seq;
    if (!r.low_memory_ours || low_memory_exit_ms_ <= 0 || pending_kills_ > 0 || !room ||
        flags_changed) {
      healthy_since_ = -1;
      return Observation::Ok(notes);
    }
    if (healthy_since_ < 0) healthy_since_ = now;
    int64_t healthy_ms = now - healthy_since_;
    if (healthy_ms < low_memory_exit_ms_)
      return Observation::Ok(notes + "; leaves it after " +
                             std::to_string((low_memory_exit_ms_ - healthy_ms + 999) / 1000) +
                             " s more of healthy memory");
    return Observation::Failing(std::string(kLowMemoryExitEvidence) + " for " +
                                std::to_string(healthy_ms / 1000) + " s: leave it (" + notes + ")");
  }

  DetectorEnv env_;
  std::string service_;
  MemoryLimits limits_;
  int64_t psi_stall_ms_ = 0;
  std::string cgroup_;
  std::string psi_note_;
  bool psi_fired_ = false;
  bool kills_known_ = false;
  uint64_t kills_seen_ = 0;
  uint64_t pending_kills_ = 0;
  int64_t flags_seq_at_kill_ = 0;
  int64_t killed_at_ = 0;  // wall ms of the OOM-killed process's exit, when known
  int64_t last_probe_at_ = 0;
  int64_t low_memory_exit_ms_ = 30000;
  int64_t healthy_since_ = -1;  // mono ms since when low-memory mode has had room to spare
  int64_t exit_flags_seq_ = -1;
  std::unique_ptr<PsiTrigger> trigger_;
  std::unique_ptr<FsWatch> watch_;
};

}  // namespace

GUARDIAN_REGISTER_DETECTOR(
    out_of_memory,
    DetectorFactory{
        "out_of_memory",
        {
            {"service", ParamType::kString, true,
             "the supervised service whose memory is judged and whom the playbook asks to "
             "shed caches, go low-memory or restart"},
            {"rss_limit_mb", ParamType::kInt, false,
             "the service's RSS limit (its process and every descendant); 0: off"},
            {"min_available_mb", ParamType::kInt, false,
             "system MemAvailable floor in MiB; 0: off"},
            {"min_available_percent", ParamType::kNumber, false,
             "system MemAvailable floor as a share of MemTotal; 0: off"},
            {"psi_some_avg10", ParamType::kNumber, false,
             "failing when tasks stalled on memory more than this % of the last 10 s; 0: off"},
            {"psi_stall_ms", ParamType::kInt, false,
             "arm a kernel PSI trigger: wake when tasks stall this long within 1 s (where the "
             "kernel allows triggers); 0: off"},
            {"cgroup", ParamType::kPath, false,
             "the service's memory cgroup folder, whose OOM kills count (default: the "
             "service's own cgroup, when it has one)"},
            {"low_memory_exit_ms", ParamType::kInt, false,
             "leave low-memory mode this check turned on once memory has had room to spare "
             "(RSS at most 3/4 of the limit, no pressure) this long (default 30000); 0: never"},
        },
        [](const DetectorEnv& env) -> std::shared_ptr<Detector> {
          return std::make_shared<OutOfMemoryDetector>(env);
        },
    });

}  // namespace guardian
