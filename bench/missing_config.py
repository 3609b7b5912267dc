#!/usr/bin/env python3
"""Benchmark: the real guardiand healing missing_config faults.

Starts build/bin/guardiand (the default RelWithDebInfo preset) on a temporary directory and
measures, in this order:

  (d) idle: VmRSS and CPU % of the daemon (one check, no incident) over --idle-seconds,
      sampled every second from /proc/PID/status and /proc/PID/stat
  (a) detection: unlink of the watched file -> the incident's detected_at        (--runs times)
  (b) restore:   unlink -> the file is back with its original content (polled every 1 ms),
      plus mttr_ms and recovered_at from the incident                             (same runs)
  (c) loop lag:  10 checks, each with its own file and a test playbook that sleeps 3 s in
      remediate and then restores; all 10 files are deleted at once and loop_lag_us is read
      from STATE_DIR/status.json while the 10 playbooks sleep                     (--runs rounds)

Prints a Markdown table (median and p95 of each) and, with --json FILE, writes every raw sample.
Times are wall-clock milliseconds on both sides: time.time() here, CLOCK_REALTIME in the daemon.
The script stops by itself: every wait has a deadline and an alarm bounds the whole run; the
daemon is stopped (SIGTERM, then SIGKILL) in a finally block.

  bench/missing_config.py [--runs 30] [--idle-seconds 60] [--json FILE] [--keep]
"""
import argparse
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BenchError, Daemon, machine_info, p95, wait_for, yaml_str  # noqa: E402

# The watched file. required_keys below must be in it.
ORIGINAL = b"server:\n  port: 8080\n  workers: 4\ndatabase:\n  path: /srv/app/app.db\n"
REQUIRED_KEYS = ["server.port", "database.path"]

LAG_CHECKS = 10
LAG_SLEEP_MS = 3000
# The test playbook of (c): wait in remediate (a yielding host call), then restore the newest
# last-known-good copy the detector kept.
SLEEP_PLAYBOOK = """\
-- Benchmark playbook (written by bench/missing_config.py): sleeps, then restores.
return {
  name = "bench_sleep",
  mode = "missing_config",
  description = "benchmark: guardian.sleep(%(ms)d) in remediate, then restore the kept copy",
  timeout = %(timeout)d,
  remediate = function(ctx)
    guardian.sleep(%(ms)d)
    local newest = guardian.state.versions()[1]
    if not newest then error("no last-known-good copy of " .. ctx.params.path) end
    local ok, err = guardian.fs.copy(newest, ctx.params.path)
    if not ok then error(err) end
    return "slept %(ms)d ms, restored " .. newest
  end,
}
"""

GOALS = {
    "detect_ms": ("p50 < 100 ms", lambda med, p95: med < 100),
    "restore_ms": ("p50 < 1 s", lambda med, p95: med < 1000),
    "lag_p99_us": ("p99 < 10 ms", lambda med, p95: p95 < 10_000),
}


def now_ms():
    return time.time() * 1000.0


def file_is_original(path):
    try:
        with open(path, "rb") as f:
            return f.read() == ORIGINAL
    except OSError:
        return False


def write_original(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(ORIGINAL)


def base_config(playbook_dir):
    # A budget and a breaker large enough for every run; everything else is the shipped default
    # (interval_ms 1000, jitter 0.1, debounce 1, settle_ms 30, phase_timeout_ms 30000).
    return (f"state_dir: @STATE@\n"
            f"playbook_dirs: [{yaml_str(playbook_dir)}]\n"
            f"log_level: info\n"
            f"budget: {{ max_actions: 100000, window_ms: 3600000 }}\n"
            f"breaker: {{ max_actions: 100000, window_ms: 60000 }}\n"
            f"checks:\n")


def check_entry(check_id, path, playbook=None):
    s = (f"  - id: {check_id}\n"
         f"    mode: missing_config\n")
    if playbook:
        s += f"    playbook: {playbook}\n"
    s += (f"    params: {{ path: {yaml_str(path)}, "
          f"required_keys: [{', '.join(REQUIRED_KEYS)}] }}\n")
    return s


def read_proc(pid):
    """(utime + stime in clock ticks, VmRSS in kB) of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    rss_kb = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return ticks, rss_kb


def measure_idle(d, seconds, out):
    """(d): one sample per second of RSS and CPU over `seconds`."""
    hz = os.sysconf("SC_CLK_TCK")
    ticks0, _ = read_proc(d.pid)
    t0 = time.monotonic()
    prev_ticks, prev_t = ticks0, t0
    rss, cpu = [], []
    for _ in range(seconds):
        time.sleep(max(0.0, prev_t + 1.0 - time.monotonic()))
        d._alive()
        ticks, rss_kb = read_proc(d.pid)
        t = time.monotonic()
        rss.append(rss_kb / 1024.0)
        cpu.append(100.0 * (ticks - prev_ticks) / hz / (t - prev_t))
        prev_ticks, prev_t = ticks, t
    out["idle_rss_mib"] = rss
    out["idle_cpu_pct"] = cpu
    out["idle_cpu_pct_whole_window"] = 100.0 * (prev_ticks - ticks0) / hz / (prev_t - t0)
    out["idle_seconds"] = prev_t - t0
    out["idle_loop_lag_us"] = (d.status() or {}).get("loop_lag_us")


def measure_heal(d, path, runs, out):
    """(a) and (b): delete the watched file `runs` times."""
    last_id = max([i["id"] for i in d.newest_incidents(1, "bench")] or [0])
    for run in range(runs):
        # Let the previous restore's file event and probe pass, at a random phase of the poll.
        time.sleep(random.uniform(0.3, 0.5))
        if not file_is_original(path):
            raise BenchError(f"run {run}: {path} is not in its original state before the fault")
        t0 = now_ms()
        os.unlink(path)
        # (b) the file is valid again: polled every 1 ms.
        deadline = time.monotonic() + 20
        while not file_is_original(path):
            if time.monotonic() > deadline:
                raise BenchError(f"run {run}: {path} not restored within 20 s\n{d.log_tail()}")
            time.sleep(0.001)
        t_valid = now_ms()
        newest = wait_for(
            f"run {run}: the incident to end", 20,
            lambda: [i for i in d.newest_incidents(1, "bench")
                     if i["id"] > last_id and i["state"] in ("resolved", "escalated")])[0]
        last_id = newest["id"]
        inc = d.incident(newest["id"])
        sample = {
            "incident": inc["id"],
            "state": inc["state"],
            "attempts": inc["attempts"],
            "unlink_at": t0,
            "detect_ms": inc["detected_at"] - t0,
            "restore_ms": t_valid - t0,
            "mttd_ms": inc["mttd_ms"],
            "mttr_ms": inc["mttr_ms"],
            "recovered_after_unlink_ms": (inc["recovered_at"] - t0) if inc["recovered_at"] else None,
        }
        out.append(sample)
        print(f"  run {run + 1:2d}/{runs}: detect {sample['detect_ms']:7.1f} ms, restore "
              f"{sample['restore_ms']:7.1f} ms, mttr_ms {sample['mttr_ms']}, {inc['state']}",
              file=sys.stderr)


def measure_lag(d, paths, rounds, out):
    """(c): break all checks at once, read loop_lag_us while their playbooks sleep."""
    n = len(paths)
    last_id = max([i["id"] for i in d.newest_incidents(1)] or [0])
    for rnd in range(rounds):
        time.sleep(random.uniform(0.3, 0.5))
        for p in paths:
            if not file_is_original(p):
                raise BenchError(f"round {rnd}: {p} is not in its original state")
        t_break = time.time()
        for p in paths:
            os.unlink(p)
        # The first status.json written at least 1.5 s after the break (the playbooks start
        # sleeping ~40 ms after it and sleep 3 s) that shows all of them running.
        reading, rss_kb = None, None
        deadline = t_break + LAG_SLEEP_MS / 1000.0 + 0.5
        seen_mtime = 0.0
        while time.time() < deadline:
            mtime, st = d.status_with_mtime()
            if st is not None and mtime != seen_mtime:
                seen_mtime = mtime
                if mtime >= t_break + 1.5 and st.get("running_playbooks") == n:
                    reading = dict(st["loop_lag_us"], status_written_at=mtime * 1000.0,
                                   running_playbooks=st["running_playbooks"])
                    rss_kb = read_proc(d.pid)[1]
                    break
            time.sleep(0.02)
        # Wait for every file and every incident of this round.
        wait_for(f"round {rnd}: all files restored", 20,
                 lambda: all(file_is_original(p) for p in paths), 0.005)
        def round_ended():
            new = [i for i in d.newest_incidents(n) if i["id"] > last_id]
            done = len(new) == n and all(i["state"] in ("resolved", "escalated") for i in new)
            return new if done else None

        incs = wait_for(f"round {rnd}: all {n} incidents to end", 20, round_ended)
        last_id = max(i["id"] for i in incs)
        # When all n were in remediate at once (journaled step times), to say how much of the
        # reading's window (samples x 100 ms) fell while they slept.
        starts, ends = [], []
        for i in incs:
            for s in i["steps"]:
                if s["phase"] == "remediate" and s["ended_at"]:
                    starts.append(s["started_at"])
                    ends.append(s["ended_at"])
        sample = {"round": rnd, "break_at": t_break * 1000.0,
                  "resolved": sum(i["state"] == "resolved" for i in incs),
                  "all_sleeping_from": max(starts) if len(starts) == n else None,
                  "all_sleeping_until": min(ends) if len(ends) == n else None,
                  "rss_mib": rss_kb / 1024.0 if rss_kb else None,
                  "reading": reading}
        out.append(sample)
        if reading is None:
            print(f"  round {rnd + 1:2d}/{rounds}: no status.json with {n} running playbooks "
                  f"between 1.5 s and {LAG_SLEEP_MS / 1000 + 0.5} s after the break",
                  file=sys.stderr)
        else:
            print(f"  round {rnd + 1:2d}/{rounds}: loop lag p50 {reading['p50']} us, p99 "
                  f"{reading['p99']} us, max {reading['max']} us over {reading['samples']} ticks; "
                  f"{sample['resolved']}/{n} resolved", file=sys.stderr)
    # The share of each reading's window during which all playbooks were sleeping.
    for s in out:
        r = s["reading"]
        if r is None:
            continue
        w_end = r["status_written_at"]
        w_start = w_end - r["samples"] * 100.0
        busy = 0.0
        for o in out:
            if o["all_sleeping_from"] is None:
                continue
            lo, hi = max(w_start, o["all_sleeping_from"]), min(w_end, o["all_sleeping_until"])
            busy += max(0.0, hi - lo)
        r["window_share_all_sleeping"] = busy / (w_end - w_start) if w_end > w_start else None


def summarize(results):
    heal = [s for s in results["heal"] if s["state"] == "resolved"]
    lag = [s["reading"] for s in results["lag"] if s["reading"]]
    rows = []

    def row(key, label, unit, values, goal_key=None):
        values = [v for v in values if v is not None]
        if not values:
            rows.append((label, unit, 0, None, None, "", ""))
            return
        med, hi = statistics.median(values), p95(values)
        goal, met = "", ""
        if goal_key:
            goal, check = GOALS[goal_key]
            met = "yes" if check(med, hi) else "NO"
        rows.append((label, unit, len(values), med, hi, goal, met))

    row("detect", "(a) detection: unlink -> detected_at", "ms",
        [s["detect_ms"] for s in heal], "detect_ms")
    row("restore", "(b) restore: unlink -> file valid again", "ms",
        [s["restore_ms"] for s in heal], "restore_ms")
    row("mttr", "(b) mttr_ms of the incident (recovered_at - onset_at)", "ms",
        [s["mttr_ms"] for s in heal])
    row("recovered", "(b) unlink -> recovered_at", "ms",
        [s["recovered_after_unlink_ms"] for s in heal])
    row("lag50", f"(c) loop lag p50, {LAG_CHECKS} playbooks sleeping", "us",
        [r["p50"] for r in lag])
    row("lag99", f"(c) loop lag p99, {LAG_CHECKS} playbooks sleeping", "us",
        [r["p99"] for r in lag], "lag_p99_us")
    row("lagmax", f"(c) loop lag max, {LAG_CHECKS} playbooks sleeping", "us",
        [r["max"] for r in lag])
    row("rss", "(d) idle RSS (1 s samples)", "MiB", results["idle"].get("idle_rss_mib", []))
    row("cpu", "(d) idle CPU (1 s samples)", "%", results["idle"].get("idle_cpu_pct", []))
    whole = results["idle"].get("idle_cpu_pct_whole_window")
    row("cpuw", "(d) idle CPU (whole window)", "%", [whole] if whole is not None else [])
    idle_lag = results["idle"].get("idle_loop_lag_us") or {}
    for k in ("p50", "p99", "max"):
        row("idlelag" + k, f"(d) idle loop lag {k} (status.json at the end)", "us",
            [idle_lag[k]] if k in idle_lag else [])
    return rows


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
    return str(int(v))


def markdown(rows):
    out = ["| metric | unit | n | median | p95 | goal | goal met |",
           "|---|---|---:|---:|---:|---|---|"]
    for label, unit, n, med, hi, goal, met in rows:
        out.append(f"| {label} | {unit} | {n} | {fmt(med)} | {fmt(hi)} | {goal} | {met} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30,
                    help="faults for (a)/(b), and rounds for (c) (default 30)")
    ap.add_argument("--idle-seconds", type=int, default=60,
                    help="length of the idle measurement (d) (default 60)")
    ap.add_argument("--json", metavar="FILE", help="write every raw sample here")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bin"),
                    help="where guardiand and guardian are (default build/bin)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    if args.runs < 1 or args.idle_seconds < 1:
        ap.error("--runs and --idle-seconds must be >= 1")
    for b in ("guardiand", "guardian"):
        if not os.access(os.path.join(args.bin_dir, b), os.X_OK):
            ap.error(f"{args.bin_dir}/{b} not found; build first: "
                     "cmake --preset default && cmake --build --preset default")

    meta = machine_info()
    if meta["build_type"] and meta["build_type"] != "RelWithDebInfo":
        print(f"warning: build/ is {meta['build_type']}, not RelWithDebInfo", file=sys.stderr)
    meta.update(runs=args.runs, idle_seconds_requested=args.idle_seconds,
                lag_checks=LAG_CHECKS, lag_sleep_ms=LAG_SLEEP_MS)

    # A hard bound on the whole run, on top of every wait's own deadline.
    budget_s = 120 + args.idle_seconds + args.runs * (25 + LAG_SLEEP_MS / 1000 + 25)

    def on_alarm(signum, frame):
        raise BenchError(f"benchmark exceeded its overall bound of {budget_s:.0f} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(budget_s))
    def on_term(signum, frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, on_term)

    work = tempfile.mkdtemp(prefix="guardian-bench-")
    results = {"meta": meta, "idle": {}, "heal": [], "lag": []}
    daemons = []
    ok = False
    try:
        # (d), then (a) and (b): one check on the shipped playbook.
        app = os.path.join(work, "heal", "app", "app.yaml")
        write_original(app)
        cfg = base_config(os.path.join(ROOT, "playbooks")) + check_entry("bench", app)
        d = Daemon(args.bin_dir, work, "heal", cfg)
        daemons.append(d)
        d.start()
        wait_for("the first probe", 10,
                 lambda: any(c.get("state") == "ok" for c in (d.status() or {}).get("checks", [])))
        time.sleep(1.0)
        print(f"(d) idle for {args.idle_seconds} s ...", file=sys.stderr)
        measure_idle(d, args.idle_seconds, results["idle"])
        meta["loadavg"]["after_idle"] = os.getloadavg()
        print(f"(a)/(b) {args.runs} deletions of the watched file ...", file=sys.stderr)
        measure_heal(d, app, args.runs, results["heal"])
        meta["loadavg"]["after_heal"] = os.getloadavg()
        d.stop()

        # (c): LAG_CHECKS checks, each its own file, all on the sleeping test playbook.
        pb_dir = os.path.join(work, "lag", "playbooks")
        os.makedirs(pb_dir)
        with open(os.path.join(pb_dir, "bench_sleep.lua"), "w") as f:
            f.write(SLEEP_PLAYBOOK % {"ms": LAG_SLEEP_MS, "timeout": LAG_SLEEP_MS + 7000})
        paths = [os.path.join(work, "lag", f"c{i:02d}", "app.yaml") for i in range(LAG_CHECKS)]
        cfg = base_config(pb_dir)
        for i, p in enumerate(paths):
            write_original(p)
            cfg += check_entry(f"lag{i:02d}", p, playbook="bench_sleep")
        d = Daemon(args.bin_dir, work, "lag", cfg)
        daemons.append(d)
        d.start()
        wait_for(f"the first probe of all {LAG_CHECKS} checks", 10, lambda: sum(
            c.get("state") == "ok" for c in (d.status() or {}).get("checks", [])) == LAG_CHECKS)
        # Every kept version must exist before the first break, or the playbook has nothing
        # to restore from.
        version_dirs = [os.path.join(d.state_dir, "checks", f"lag{i:02d}", "versions")
                        for i in range(LAG_CHECKS)]
        wait_for("last-known-good copies", 10,
                 lambda: all(os.path.isdir(v) and os.listdir(v) for v in version_dirs))
        time.sleep(1.0)
        print(f"(c) {args.runs} rounds of {LAG_CHECKS} playbooks sleeping "
              f"{LAG_SLEEP_MS} ms at once ...", file=sys.stderr)
        measure_lag(d, paths, args.runs, results["lag"])
        meta["loadavg"]["after_lag"] = os.getloadavg()
        d.stop()
        ok = True
    except BenchError as e:
        print(f"bench failed: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("bench interrupted", file=sys.stderr)
    finally:
        signal.alarm(0)
        for d in daemons:
            try:
                d.stop()
            except Exception as e:  # keep stopping the others
                print(f"stopping guardiand: {e}", file=sys.stderr)
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    rows = summarize(results)
    results["summary"] = [dict(zip(("metric", "unit", "n", "median", "p95", "goal", "goal_met"), r))
                          for r in rows]
    failed_heal = [s for s in results["heal"] if s["state"] != "resolved"]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"commit {meta['commit']}{' (dirty tree)' if meta['tree_dirty'] else ''}, "
          f"{meta['build_type'] or 'unknown build type'}, {meta['nproc']} x {meta['cpu']}, "
          f"kernel {meta['kernel']}, {meta['date']}")
    print("load average (1 min) " + ", ".join(
        f"{k} {v[0]:.2f}" for k, v in meta["loadavg"].items()))
    print()
    print(markdown(rows))
    lag = [s["reading"] for s in results["lag"] if s["reading"]]
    shares = [r["window_share_all_sleeping"] for r in lag
              if r.get("window_share_all_sleeping") is not None]
    if shares:
        print(f"\n(c) share of each reading's window with all {LAG_CHECKS} playbooks sleeping: "
              f"median {statistics.median(shares):.0%}")
    if failed_heal:
        print(f"\n{len(failed_heal)} run(s) did not resolve: "
              f"{[(s['incident'], s['state']) for s in failed_heal]}")
    return 0 if ok and not failed_heal else 1


if __name__ == "__main__":
    sys.exit(main())
