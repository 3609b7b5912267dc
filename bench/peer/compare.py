#!/usr/bin/env python3
"""Side-by-side report of two peer-benchmark runs (Monit, then Guardian) on one machine.

Usage: compare.py MONIT.json GUARDIAN.json [--loop-lag LAG.json] [--same-cycle G1S.json]
       [--same-cycle-connect G1SC.json] [--probe-floor FLOOR.json] [--docs docs/benchmarks.md]
Prints the Markdown section; with --docs, replaces the section between the peer markers in that
file (appending it when the markers are missing). Ratios are Guardian / Monit (under 1 is
better); each goal of the issue is judged on these figures and marked met or missed.
"""
import argparse
import json
import math
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guardian_adapter  # noqa: E402

BEGIN = "<!-- peer-benchmark:begin (bench/peer/run writes this section) -->"
END = "<!-- peer-benchmark:end -->"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pct(values, p):
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    return vals[max(0, math.ceil(p * len(vals)) - 1)]


def ms(v):
    return "—" if v is None else (f"{v * 1000:.1f}" if v < 0.1 else f"{v * 1000:.0f}")


def ratio(g, m):
    return "—" if g is None or not m else f"{g / m:.3f}"


def mark(ok):
    return "met" if ok else "**missed**"


def floor_us(floor, name):
    for f in floor.get("c", []):
        if f["name"] == name:
            return f.get("median_us")
    return None


# The harness polls health every 10 ms and counts a run as recovered only once it has seen the
# failure. A watchdog that heals before that first poll leaves `recover` empty though it acted
# (its stamp is there): such a run recovered within one poll, so 10 ms stands for it, as an
# upper bound, and it is not counted as failed.
POLL_S = 0.010


def healed_unseen(run):
    return run["recover_s"] is None and not run["failure_visible"] and run["detect_s"] is not None


def runs_of(res, scenario, key):
    out = []
    for r in res["scenarios"].get(scenario, {}).get("runs", []):
        if key == "recover" and healed_unseen(r):
            out.append(POLL_S)
        else:
            out.append(r[f"{key}_s"])
    return out


def unseen_count(res, scenario):
    return sum(1 for r in res["scenarios"].get(scenario, {}).get("runs", []) if healed_unseen(r))


def probe_floor_pct(floor, http_ms, connects):
    """CPU % of the bare client making these probes (bench/peer/probe_floor.py), or None."""
    for r in (floor or {}).get("rows", []):
        if r["http_ms"] == http_ms and r["connects_per_s"] == connects:
            return r["cpu_pct_of_one_core"]
    return None


def render(monit, guardian, lag=None, same=None, same_connect=None, probe_floor=None):
    L = []
    m = monit.get("machine", {})
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    fl = monit.get("floor", {})
    sup = fl.get("supervisor", {})
    n = monit.get("args", {}).get("runs")
    L.append("## Side by side with Monit (`bench/peer/run`)\n")
    L.append(f"- {monit.get('version')} and {guardian.get('version')} (commit `{commit}`), one "
             f"after the other in one run: {monit.get('started')} to {guardian.get('finished')}.")
    L.append(f"- Machine: {m.get('os')}, kernel {m.get('kernel')}, {m.get('cpus')} CPUs "
             f"({m.get('cpu', '?')}), as root; nothing else running.")
    L.append(f"- The peer harness: {n} injections per failure at a random point of the check "
             "cycle; the harness probes health every 10 ms (50 ms timeout). Detect = fault to "
             "the remedy script's first line; recover = fault to the harness seeing it healthy; "
             "confirmed = fault to the watchdog's own first OK test (Guardian: the incident's "
             "verified `recovered_at`). Monit runs `set daemon 1` with a 10 s start timeout; "
             "Guardian the adapter's config (probe-only checks every 90 ms, events elsewhere).")
    L.append("- Ratios are Guardian / Monit: under 1 is better. p95 is the nearest rank.\n")

    # ---------------------------------------------------------------- failures
    floors = {
        "svc_crash": ("pidfd wakes on the exit", floor_us(fl, "pidfd_crash_to_wake")),
        "cfg_missing": ("inotify wakes on the unlink", floor_us(fl, "inotify_unlink_to_wake")),
        "fs_full": ("inotify wakes on the write", floor_us(fl, "inotify_unlink_to_wake")),
    }
    L.append("| scenario | metric | Monit p50 | Guardian p50 | ratio p50 | Monit p95 | "
             "Guardian p95 | floor | goal | |")
    L.append("|---|---|---:|---:|---:|---:|---:|---|---|---|")
    goals = []
    unjudged = []  # goals this run gave no data for
    for sc in guardian.get("scenarios", {}):
        for key in ("detect", "recover", "confirmed"):
            mv, gv = runs_of(monit, sc, key), runs_of(guardian, sc, key)
            m50, g50, m95, g95 = pct(mv, .5), pct(gv, .5), pct(mv, .95), pct(gv, .95)
            floor, goal, ok = "", "", None
            if sc in floors and key == "detect":
                what, f_us = floors[sc]
                floor = f"{what}: {f_us / 1000:.3f} ms" if f_us is not None else what
                bound = (f_us or 0) / 1e6 + 0.010
                goal = "≤ Monit/10 and ≤ floor + 10 ms"
                ok = g50 is not None and m50 is not None and g50 <= m50 / 10 and g50 <= bound
            elif sc == "svc_crash" and key == "recover":
                naive = sup.get("recover_median_ms")
                floor = f"naive supervisor: {naive:.0f} ms" if naive else ""
                goal = "≤ 1.5 × naive supervisor"
                ok = g50 is not None and naive is not None and g50 * 1000 <= 1.5 * naive
            elif sc in ("cfg_missing", "fs_full") and key == "recover":
                goal = "≤ Monit/10"
                ok = g50 is not None and m50 is not None and g50 <= m50 / 10
            elif key == "detect":
                check_timeout = 1.0  # the checks' configured timeout (spec timeout_s)
                floor = f"the {check_timeout:.0f} s probe timeout"
                goal = "every run ≤ timeout + 100 ms"
                worst = max((v for v in gv if v is not None), default=None)
                ok = worst is not None and worst <= check_timeout + 0.100
            elif key == "confirmed":
                gaps = [c - r for c, r in zip(gv, runs_of(guardian, sc, "recover"))
                        if c is not None and r is not None]
                worst = max(gaps, default=None)
                unseen = unseen_count(guardian, sc)
                goal = "every run ≤ recover + 100 ms" + (
                    f" (worst {worst * 1000:+.0f} ms" + (
                        f"; {unseen} healed unseen, not asked" if unseen else "") + ")"
                    if worst is not None else "")
                ok = worst is not None and worst <= 0.100 and len(gaps) + unseen == len(gv)
                if worst is None and gv and unseen == len(gv):
                    # Every run healed before the harness's first poll: it asked no confirmed
                    # time, so there is nothing to judge, neither way.
                    goal += f" (all {unseen} healed unseen: not measured)"
                    ok = None
                    unjudged.append(f"{sc} confirmed")
            L.append(f"| {sc} | {key} | {ms(m50)} | {ms(g50)} | {ratio(g50, m50)} | {ms(m95)} | "
                     f"{ms(g95)} | {floor} | {goal} | {'' if ok is None else mark(ok)} |")
            if ok is not None:
                goals.append(ok)
    def failed(res, name):
        sc = res["scenarios"].get(name, {})
        return (sc.get("failed_runs") or 0) - unseen_count(res, name)

    names = list(guardian.get("scenarios", {}))
    bad = [f"{k} (Monit {failed(monit, k)}, Guardian {failed(guardian, k)})" for k in names
           if failed(monit, k) or failed(guardian, k)]
    unseen = [f"{k}: Monit {unseen_count(monit, k)}, Guardian {unseen_count(guardian, k)}"
              for k in names if unseen_count(monit, k) or unseen_count(guardian, k)]
    L.append("")
    L.append("Times in ms. Runs that did not recover within 30 s: " +
             (", ".join(bad) if bad else "none") + ".")
    if unseen:
        L.append("Runs healed before the harness's first 10 ms health poll (it never saw the "
                 "failure, so it reports no recover time; the watchdog's action stamp is there): "
                 + "; ".join(unseen) + ". They count as a 10 ms recover (an upper bound), and "
                 "their confirmed time is not asked.")
    L.append("")

    # ---------------------------------------------------------------- overhead
    ov_m = {o["checks"]: o for o in monit.get("overhead", [])}
    rows = []  # (checks, how Guardian ran, its overhead record, its probes' floor key)
    fast = guardian_adapter.PROBE_MS  # the main run sets no PROBE_MS: the adapter's default
    for o in sorted(guardian.get("overhead", []), key=lambda o: o["checks"]):
        rows.append((o["checks"], f"svc, api every {fast} ms; tcp connect", o,
                     (fast, o["checks"] - 4)))
    for res, how, connecting in ((same or {}, "all every 1 s; tcp `method: listen`", False),
                                 (same_connect or {}, "all every 1 s; tcp connect", True)):
        for o in sorted(res.get("overhead", []), key=lambda o: o["checks"]):
            rows.append((o["checks"], how, o, (1000, o["checks"] - 4 if connecting else 0)))
    if rows:
        L.append(f"Idle cost over a {rows[0][2]['wall_s']:.0f} s window (CPU: utime+stime of all "
                 "threads ÷ wall time; RSS: VmRSS median, which counts the shared libraries' "
                 "resident pages too; cycle: extra port checks × window ÷ connections the acceptor "
                 "saw, none with `method: listen`). Monit checks everything every 1 s. The goals "
                 "are judged where Guardian runs on that same cycle, and at 4 checks also with "
                 "the fast probes the hang goals need. **probes alone** is the CPU of the "
                 "cheapest client making the same network probes as Guardian's row (two GETs "
                 "every interval, the port checks' connects in one burst a second; "
                 "`bench/peer/probe_floor.py`, measured in the same run): the floor under any "
                 "watchdog that probes that often.\n")
        L.append("| checks | Guardian runs | Monit CPU % | Guardian CPU % | ratio | probes alone "
                 "CPU % | Monit RSS MiB | Guardian RSS MiB | ratio | cycle Monit / Guardian s | "
                 "goal | |")
        L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
        for checks, how, g, key in rows:
            mo = ov_m.get(checks, {})
            gc, mc = g["cpu_pct_of_one_core"], mo.get("cpu_pct_of_one_core")
            gr, mr = g["rss_kib_median"] / 1024, (mo.get("rss_kib_median") or 0) / 1024 or None
            cyc = "/".join("—" if not x.get("effective_cycle_s") else f"{x['effective_cycle_s']:.2f}"
                           for x in (mo, g))
            same_cycle = how.startswith("all every 1 s")
            if checks == 4:
                goal, ok = "CPU and RSS ≤ Monit's", mc is not None and gc <= mc and gr <= (mr or 0)
            elif checks == 1000 and same_cycle:
                goal, ok = "CPU ≤ Monit/2, RSS < 32 MiB", mc is not None and gc <= mc / 2 and gr < 32
            else:
                goal, ok = "", None
            fp = probe_floor_pct(probe_floor, *key)
            L.append(f"| {checks} | {how} | {mc if mc is None else f'{mc:.2f}'} | {gc:.2f} | "
                     f"{ratio(gc, mc)} | {'—' if fp is None else f'{fp:.2f}'} | "
                     f"{'—' if mr is None else f'{mr:.1f}'} | {gr:.1f} | "
                     f"{ratio(gr, mr)} | {cyc} | {goal} | {'' if ok is None else mark(ok)} |")
            if ok is not None:
                goals.append(ok)
        L.append("")
    if lag:
        lu = lag["loop_lag_us"]
        ok = lu["p99"] < 10_000
        goals.append(ok)
        L.append(f"Loop lag while {lag['failing']} of {lag['checks']} `tcp` checks fail at once "
                 f"(`bench/peer/loop_lag.py`, {lag['window_s']:.0f} s window from the failure): "
                 f"p50 {lu['p50'] / 1000:.2f} ms, p99 {lu['p99'] / 1000:.2f} ms, max "
                 f"{lu['max'] / 1000:.2f} ms ({lu['samples']} samples); {lag['incidents']} "
                 f"incidents, CPU {lag['cpu_pct_of_one_core']:.1f} % over the window. Goal p99 "
                 f"under 10 ms: {mark(ok)}.\n")
    L.append(f"Goals met: {sum(goals)} of {len(goals)}" + (
        f"; not measured in this run: {', '.join(unjudged)} (every run healed before the "
        "harness's first health poll)" if unjudged else "") + ".\n")
    return "\n".join(L) + "\n"


def write_docs(path, section):
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    block = BEGIN + "\n" + section + END + "\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("monit")
    ap.add_argument("guardian")
    ap.add_argument("--loop-lag", default="")
    ap.add_argument("--docs", default="")
    ap.add_argument("--same-cycle", default="",
                    help="a Guardian overhead run with every check every 1 s, tcp method listen")
    ap.add_argument("--same-cycle-connect", default="",
                    help="the same with tcp connect (1000 checks)")
    ap.add_argument("--probe-floor", default="",
                    help="bench/peer/probe_floor.py's JSON: the CPU of the probes alone")
    a = ap.parse_args()
    with open(a.monit) as f:
        monit = json.load(f)
    with open(a.guardian) as f:
        guardian = json.load(f)
    lag = None
    if a.loop_lag:
        with open(a.loop_lag) as f:
            lag = json.load(f)
    extra = []
    for path in (a.same_cycle, a.same_cycle_connect):
        extra.append(None)
        if path:
            with open(path) as f:
                extra[-1] = json.load(f)
    floor = None
    if a.probe_floor:
        with open(a.probe_floor) as f:
            floor = json.load(f)
    section = render(monit, guardian, lag, *extra, probe_floor=floor)
    print(section)
    if a.docs:
        write_docs(a.docs, section)


if __name__ == "__main__":
    main()
