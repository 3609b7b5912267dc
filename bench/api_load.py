#!/usr/bin/env python3
"""Benchmark: the operator API under load, and what that load does to the event loop.

Starts build/bin/guardiand (default RelWithDebInfo preset) on a temporary directory with
--checks missing_config checks and a loopback TCP listener, fills its store with --incidents
real incidents (the watched files are deleted and healed, round after round), then drives
`wrk` (Debian package wrk) with --connections concurrent connections against each endpoint:

  GET /v1/status, GET /metrics              (the issue's figures)
  GET /v1/incidents?limit=100, GET /v1/mttr (answered from the store thread)

Each endpoint gets --repeats runs of --seconds s. After each run the daemon's own loop-lag
figures (loop_lag_us from status.json: the last 60 s of 100 ms ticks) are read. Prints a
Markdown table of medians over the runs and, with --json FILE, every raw figure.

  bench/api_load.py [--incidents 1000] [--connections 100] [--seconds 20] [--repeats 3]
                    [--endpoints PATH...] [--json FILE] [--keep]
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BenchError, machine_info, wait_for  # noqa: E402
ORIGINAL = b"server:\n  port: 8080\n  workers: 4\n"
ENDPOINTS = ["/v1/status", "/metrics", "/v1/incidents?limit=100", "/v1/mttr"]
GOAL_P99_MS = 5.0
GOAL_LAG_P99_MS = 10.0
POLL_S = 0.005


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(base, path):
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return json.load(r)


def write_config(tmp, n_checks, port):
    lines = [
        "state_dir: %s/state" % tmp,
        "playbook_dirs: [%s/playbooks]" % ROOT,
        "log_level: warn",
        "budget: {max_actions: 1000000, window_ms: 3600000}",
        # The fill heals 1000 incidents in seconds; the default breaker (30 attempts a minute
        # across checks) would hold them observe-only.
        "breaker: {max_actions: 1000000, window_ms: 60000}",
        "api: {tcp: \"127.0.0.1:%d\"}" % port,
        "checks:",
    ]
    files = []
    for i in range(n_checks):
        folder = os.path.join(tmp, "app%d" % i)
        os.makedirs(folder)
        path = os.path.join(folder, "app.yaml")
        with open(path, "wb") as f:
            f.write(ORIGINAL)
        files.append(path)
        lines += ["  - id: app%d" % i, "    mode: missing_config",
                  "    params: {path: %s, required_keys: [server.port]}" % path]
    cfg = os.path.join(tmp, "guardian.yaml")
    with open(cfg, "w") as f:
        f.write("\n".join(lines) + "\n")
    return cfg, files


def fill_store(base, files, wanted):
    """Deletes every watched file at once and waits for all to be healed, until the store holds
    `wanted` resolved incidents."""
    def resolved():
        modes = get_json(base, "/v1/mttr")["modes"]
        return sum(m["count"] for m in modes)
    # The detector keeps a last-known-good copy once it has seen the file valid: wait for every
    # check to have been probed healthy.
    wait_for("every check to be probed healthy", 15,
             lambda: all(c["state"] == "ok" for c in get_json(base, "/v1/status")["checks"]), POLL_S)
    time.sleep(0.5)
    rounds = 0
    while resolved() < wanted:
        batch = min(len(files), wanted - resolved())
        for p in files[:batch]:
            os.unlink(p)
        for p in files[:batch]:
            wait_for("%s to be restored" % p, 30,
                     lambda p=p: os.path.exists(p) and open(p, "rb").read() == ORIGINAL, POLL_S)
        # Let the incidents finish their probe step before the next fault.
        wait_for("the incidents of round %d to end" % rounds, 30,
                 lambda: get_json(base, "/v1/status")["open_incidents"] == 0, POLL_S)
        rounds += 1
    return resolved(), rounds


WRK_LAT = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$")
WRK_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)")
WRK_ERR = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)|Socket errors:.*")


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url, connections, seconds, threads):
    r = subprocess.run(["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds,
                        "--latency", "--timeout", "5s", url],
                       capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0:
        raise BenchError("wrk failed: " + r.stderr)
    out = {"raw": r.stdout}
    for line in r.stdout.splitlines():
        m = WRK_LAT.match(line)
        if m:
            out["p%s_ms" % m.group(1)] = to_ms(m.group(2), m.group(3))
        m = WRK_RPS.match(line)
        if m:
            out["rps"] = float(m.group(1))
        m = WRK_ERR.search(line)
        if m:
            out.setdefault("errors", []).append(line.strip())
    if "p99_ms" not in out:
        raise BenchError("no latency distribution in wrk's output:\n" + r.stdout)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--incidents", type=int, default=1000)
    ap.add_argument("--checks", type=int, default=10)
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--endpoints", nargs="+", default=ENDPOINTS, metavar="PATH",
                    help="default: " + " ".join(ENDPOINTS))
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("api_load: wrk is not installed (apt-get install wrk)")
    guardiand = os.path.join(args.bin_dir, "guardiand")
    if not os.access(guardiand, os.X_OK):
        sys.exit("api_load: %s is not built" % guardiand)

    tmp = tempfile.mkdtemp(prefix="guardian-api-bench-")
    port = free_port()
    base = "http://127.0.0.1:%d" % port
    cfg, files = write_config(tmp, args.checks, port)
    log = open(os.path.join(tmp, "guardiand.log"), "wb")
    proc = subprocess.Popen([guardiand, "--config", cfg], stdout=log, stderr=subprocess.STDOUT)
    signal.alarm(3600)  # the whole run is bounded
    results = {"machine": machine_info(), "args": vars(args), "runs": {}}
    try:
        wait_for("guardiand to answer on " + base, 15, lambda: _health(base), POLL_S)
        t0 = time.monotonic()
        stored, rounds = fill_store(base, files, args.incidents)
        results["fill"] = {"incidents": stored, "rounds": rounds,
                           "seconds": round(time.monotonic() - t0, 1)}
        print("store filled: %d resolved incidents in %d rounds, %.0f s"
              % (stored, rounds, time.monotonic() - t0), file=sys.stderr)
        status_path = os.path.join(tmp, "state", "status.json")
        idle = _lag(status_path, wait_fresh=True)
        results["idle_lag_us"] = idle
        for ep in args.endpoints:
            runs = []
            for i in range(args.repeats):
                w = run_wrk(base + ep, args.connections, args.seconds, args.threads)
                w["lag_us"] = _lag(status_path, wait_fresh=True)
                del w["raw"]
                runs.append(w)
                print("%s run %d: p50 %.2f ms p99 %.2f ms, %.0f req/s, loop lag p99 %d us max %d us"
                      % (ep, i + 1, w["p50_ms"], w["p99_ms"], w.get("rps", 0),
                         w["lag_us"]["p99"], w["lag_us"]["max"]), file=sys.stderr)
            results["runs"][ep] = runs
        if proc.poll() is not None:
            raise BenchError("guardiand died during the run")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        if args.keep:
            print("kept", tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def _health(base):
    try:
        return get_json(base, "/v1/health")["status"] in ("ok", "degraded")
    except OSError:
        return False


def _lag(status_path, wait_fresh):
    """The daemon's loop_lag_us from a status.json written after this call."""
    def read():
        try:
            with open(status_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None
    start = os.stat(status_path).st_mtime if wait_fresh else 0
    st = wait_for("a fresh status.json", 5,
                  lambda: (os.stat(status_path).st_mtime > start and read()), POLL_S)
    return st["loop_lag_us"]


def report(results):
    m = results["machine"]
    a = results["args"]
    print("\nMachine: %d × %s, kernel %s, commit %s%s, %s build, %s; load average at start %s"
          % (m["nproc"], m["cpu"], m["kernel"], m["commit"], " (dirty)" if m["tree_dirty"] else "",
             m["build_type"], m["date"], " ".join("%.2f" % v for v in m["loadavg"]["start"])))
    print("Store: %d resolved incidents (%d checks). wrk: %d connections, %d threads, %d × %d s "
          "per endpoint; medians over the runs.\n"
          % (results["fill"]["incidents"], a["checks"], a["connections"], a["threads"],
             a["repeats"], a["seconds"]))
    print("| endpoint | p50 | p99 | p99 / goal | req/s | loop lag p99 | loop lag max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for ep, runs in results["runs"].items():
        med = lambda k: statistics.median(r[k] for r in runs)
        lag99 = statistics.median(r["lag_us"]["p99"] for r in runs) / 1000
        lagmax = statistics.median(r["lag_us"]["max"] for r in runs) / 1000
        errs = sum(len(r.get("errors", [])) for r in runs)
        print("| `%s` | %.2f ms | %.2f ms | %.2f | %.0f | %.2f ms | %.1f ms |%s"
              % (ep, med("p50_ms"), med("p99_ms"), med("p99_ms") / GOAL_P99_MS, med("rps"),
                 lag99, lagmax, " (wrk reported errors)" if errs else ""))
    idle = results["idle_lag_us"]
    print("\nIdle loop lag before the load: p99 %.2f ms, max %.1f ms. Goals: API p99 < %.0f ms, "
          "loop lag p99 < %.0f ms." % (idle["p99"] / 1000, idle["max"] / 1000, GOAL_P99_MS,
                                        GOAL_LAG_P99_MS))


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        sys.exit("api_load: %s" % e)
