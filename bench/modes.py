#!/usr/bin/env python3
"""Benchmark: MTTD and MTTR of each failure mode on the real demo stack.

Lays out the demo stack (chaos/stack/seed) in a temp dir, runs build/bin/guardiand with the demo
app as its service `app` and one check per mode, and injects each mode's real fault with
chaos/inject, --runs times per kind, one at a time, waiting for the stack to be healthy between
injections. For each injection it records, from the injector's onset (the moment the fault was
made, printed by chaos/inject):

  mttd  = the incident's detected_at - onset
  mttr  = the incident's recovered_at - onset     (what the stack's users saw)
  and the incident's own mttr_ms (from Guardian's first failing probe)

Prints a Markdown table (median and p95) beside each mode's target and the goal (target / 10);
--json FILE writes every raw sample. Every wait has a deadline; guardiand is stopped (SIGTERM,
then SIGKILL) in a finally block, which stops the app with it.

  bench/modes.py [--runs 10] [--modes port_conflict,slow_boot] [--bin-dir DIR] [--json FILE]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BenchError, Daemon, free_port_base as free_base, machine_info, p95, wait_for, yaml_str  # noqa: E402

INJECT = os.path.join(ROOT, "chaos", "inject")
SEED = os.path.join(ROOT, "chaos", "stack", "seed")
TARGETS = {"port_conflict": 10_000, "slow_boot": 5_000, "db_corruption": 60_000,
           "out_of_memory": 30_000, "disk_full": 45_000, "missing_config": 10_000,
           "api_timeout": 15_000, "invalid_credentials": 5_000, "model_server_down": 20_000,
           "network_unreachable": 5_000}
# mode -> (check id, kinds, inject args, undo between runs)
PLAN = {
    "port_conflict": ("app-port", ["stale", "foreign"], [], True),
    "slow_boot": ("app-boot", ["search_index"], ["--delay-ms", "20000"], True),
    "db_corruption": ("app-db", ["pages", "header", "stale-wal"], [], True),
    # cache before leak: a leak's heal leaves the app in low-memory mode, where caches are capped
    "out_of_memory": ("app-mem", ["cache", "leak"], ["--mb", "192"], True),
    # needs root: the stack lives on a 32 MiB tmpfs mounted for the run
    "disk_full": ("app-disk", ["mixed", "logs"], [], True),
    "missing_config": ("app-config", ["delete", "wrong-type"], [], False),
    # each run opens the circuit (judged) and, after the undo, closes it again
    "api_timeout": ("app-api", ["hang", "fail"], [], True),
    # rotate's undo gives the primary client its key file's secret back
    "invalid_credentials": ("app-auth", ["expire", "revoke", "rotate"], [], True),
    # a killed server is the supervisor's to restart (within its backoff): not benched here
    "model_server_down": ("app-model", ["hang", "error"], [], False),
    # needs root: a private network namespace (chaos/stack/netlab.py); the undo brings the
    # network back and the check takes the app out of offline mode (its own incident)
    "network_unreachable": ("app-net", ["link", "drop"], [], True),
}


def network_check():
    if LAB is None:
        return ""
    return f"""
  - id: app-net
    mode: network_unreachable
    interval_ms: 250
    params:
      service: app
      targets: ["{LAB.name}:{LAB.ports[0]}", "{LAB.ip}:{LAB.ports[1]}"]
      dns_servers: ["{LAB.dns}"]
      timeout_ms: 250
      offline_probe_ms: ["1000", "2000"]
"""


def config_text(stack, bin_dir, port, api_ports):
    run = os.path.join(stack, "run")
    p1, p2, pa, pm = api_ports
    secrets = os.path.join(stack, "secrets")
    upstream = os.path.join(ROOT, "chaos", "stack", "upstream")
    return f"""state_dir: @STATE@
playbook_dirs: [{yaml_str(os.path.join(ROOT, "playbooks"))}]
log_level: warn
budget: {{ max_actions: 1000, window_ms: 3600000 }}
breaker: {{ max_actions: 1000, window_ms: 60000 }}
retry: {{ backoff_base_ms: 200, backoff_max_ms: 2000 }}
port_registry: {yaml_str(os.path.join(run, "ports.json"))}
services:
  - name: app
    argv: [{yaml_str(os.path.join(bin_dir, "demo-app"))}, --config, {yaml_str(os.path.join(stack, "app", "app.yaml"))}]
    cwd: {yaml_str(stack)}
    status_file: {yaml_str(os.path.join(run, "status.json"))}
    flags_file: {yaml_str(os.path.join(run, "flags.json"))}
    port: {{ preferred: {port}, range: [{port}, {port + 5}] }}
    restart: {{ backoff_base_ms: 200, backoff_max_ms: 5000, healthy_after_ms: 2000 }}
  - name: primary
    argv: [{yaml_str(upstream)}, api, --port, "{p1}", --name, primary]
    port: {{ preferred: {p1} }}
  - name: backup
    argv: [{yaml_str(upstream)}, api, --port, "{p2}", --name, backup]
    port: {{ preferred: {p2} }}
  - name: auth
    argv: [{yaml_str(upstream)}, auth, --port, "{pa}", --clients, {yaml_str(os.path.join(secrets, "clients.json"))}, --ttl-s, "3600"]
    port: {{ preferred: {pa} }}
  - name: model
    argv: [{yaml_str(upstream)}, model, --port, "{pm}", --models, llama3.2:1b]
    port: {{ preferred: {pm} }}
    stop_grace_ms: 1000
checks:
  - id: app-port
    mode: port_conflict
    interval_ms: 250
    params: {{ service: app, return_after_ms: 1000 }}
  - id: app-boot
    mode: slow_boot
    interval_ms: 500
    params: {{ service: app, deadline_ms: 2000, chunk_deadline_ms: 1000 }}
  - id: app-db
    mode: db_corruption
    interval_ms: 1000
    params: {{ service: app, path: {yaml_str(os.path.join(stack, "data", "app.db"))}, backup_interval_ms: 1000 }}
  - id: app-config
    mode: missing_config
    params:
      service: app
      path: {yaml_str(os.path.join(stack, "app", "app.yaml"))}
      required_keys: [server.port:int, database.path:string]
  - id: app-api
    mode: api_timeout
    interval_ms: 250
    params:
      service: app
      primary: http://127.0.0.1:{p1}
      backup: http://127.0.0.1:{p2}
      probe_path: /v1/quote?item=1
      latency_limit_ms: 500
      failures: 3
  - id: app-mem
    mode: out_of_memory
    interval_ms: 250
    params: {{ service: app, rss_limit_mb: 128 }}
  - id: app-disk
    mode: disk_full
    interval_ms: 500
    params:
      service: app
      path: {yaml_str(os.path.join(stack, "data"))}
      paths: [{yaml_str(os.path.join(stack, "logs"))}, {yaml_str(os.path.join(stack, "snapshots"))}]
      min_free_percent: 10
      log_dir: {yaml_str(os.path.join(stack, "logs"))}
      snapshot_dir: {yaml_str(os.path.join(stack, "snapshots"))}
      keep_snapshots: 5
      tmp_dirs: [{yaml_str(os.path.join(stack, "tmp"))}]
  - id: app-auth
    mode: invalid_credentials
    interval_ms: 250
    params:
      service: app
      token_file: {yaml_str(os.path.join(secrets, "token.json"))}
      token_url: http://127.0.0.1:{pa}/oauth/token
      probe_url: http://127.0.0.1:{pa}/v1/whoami
      key_files: [{yaml_str(os.path.join(secrets, "app-primary.key"))}, {yaml_str(os.path.join(secrets, "app-backup.key"))}]
  - id: app-model
    mode: model_server_down
    interval_ms: 250
    params:
      service: app
      server: model
      url: http://127.0.0.1:{pm}
      model: llama3.2:1b
      timeout_ms: 1000
""" + network_check()


LAB = None  # the NetLab of a network_unreachable run
LAST_NET_KIND = None


def inject_network(kind, undo):
    """network_unreachable's faults, made in the NetLab (chaos/inject has no network injector)."""
    onset = int(time.time() * 1000)
    if kind == "link":
        LAB.link(undo)
    else:
        LAB.drop(not undo)
    return {"mode": "network_unreachable", "kind": kind, "onset_at": onset}


def inject(work, mode, *args):
    if mode == "network_unreachable":
        global LAST_NET_KIND
        if "--undo" in args:
            return inject_network(LAST_NET_KIND, True)
        LAST_NET_KIND = args[args.index("--kind") + 1]
        return inject_network(LAST_NET_KIND, False)
    r = subprocess.run([sys.executable, INJECT, mode, "--state-dir", work, *args],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise BenchError(f"chaos/inject {mode} {' '.join(args)}: {r.stderr.strip()}")
    return json.loads(r.stdout)


def app_ready(d, forgiven=False):
    """The app is ready (and with `forgiven`, its restart backoff is back to the base delay, so
    every injection meets the same supervisor)."""
    st = d.status() or {}
    return any(s.get("name") == "app" and s.get("state") == "ready" and
               (not forgiven or s.get("failures") == 0) for s in st.get("services", []))


def settle(d, check):
    """Healthy: the app ready, no open incident, and the check ok."""
    def ok():
        st = d.status() or {}
        checks = {c["id"]: c for c in st.get("checks", [])}
        return app_ready(d, forgiven=True) and st.get("open_incidents") == 0 and \
            checks.get(check, {}).get("state") == "ok"
    wait_for(f"{check} healthy again", 30, ok, 0.05)


def newest_id(d, check):
    found = d.newest_incidents(1, check)
    return found[0]["id"] if found else 0


def wait_resolved(d, check, after):
    def done():
        for inc in d.newest_incidents(5, check):
            if inc["id"] > after and inc["state"] in ("resolved", "escalated"):
                return inc
        return None
    inc = wait_for(f"an incident of {check} after #{after}", 60, done, 0.05)
    if inc["state"] != "resolved":
        raise BenchError(f"incident {inc['id']} of {check} ended {inc['state']}: {inc}")
    return d.incident(inc["id"])


def run_mode(d, work, mode, runs, samples):
    check, kinds, extra, undo = PLAN[mode]
    for kind in kinds:
        for i in range(runs):
            settle(d, check)
            time.sleep(0.2)  # a random-ish point of the probe cycle comes from the app's restart
            last = newest_id(d, check)
            fault = inject(work, mode, "--kind", kind, *extra)
            inc = wait_resolved(d, check, last)
            onset = fault["onset_at"]
            samples.append({"mode": mode, "kind": kind, "run": i,
                            "mttd_ms": inc["detected_at"] - onset,
                            "mttr_ms": inc["recovered_at"] - onset,
                            "incident_mttr_ms": inc["mttr_ms"], "incident": inc["id"]})
            if undo:
                inject(work, mode, "--undo")
                if (mode == "port_conflict" and kind == "foreign") or \
                        mode in ("api_timeout", "network_unreachable"):
                    wait_resolved(d, check, inc["id"])  # the move back home, the circuit closed


# The figure each mode's goal is judged on. A slow boot is not a failure until its deadline
# passes, so for slow_boot the time from the injector's restart to the deadline is part of the
# fault, not of the recovery: the incident's own MTTR (from the deadline crossing) is judged.
JUDGED = {"port_conflict": "mttr_ms", "slow_boot": "incident_mttr_ms", "db_corruption": "mttr_ms",
          "out_of_memory": "mttr_ms", "disk_full": "mttr_ms", "missing_config": "mttr_ms",
          "api_timeout": "mttr_ms", "invalid_credentials": "mttr_ms",
          "model_server_down": "mttr_ms", "network_unreachable": "mttr_ms"}


def table(samples, modes):
    out = ["| mode (kind) | n | MTTD from fault p50 / p95 | MTTR from fault p50 / p95 "
           "| incident MTTR p50 / p95 | target | goal (target/10) | judged p50 / goal |",
           "|---|---|---|---|---|---|---|---|"]
    for mode in modes:
        for kind in PLAN[mode][1]:
            rows = [s for s in samples if s["mode"] == mode and s["kind"] == kind]
            if not rows:
                continue
            mttd = [s["mttd_ms"] for s in rows]
            mttr = [s["mttr_ms"] for s in rows]
            inc = [s["incident_mttr_ms"] for s in rows]
            goal = TARGETS[mode] / 10
            judged = statistics.median(s[JUDGED[mode]] for s in rows)
            out.append(f"| {mode} ({kind}) | {len(rows)} | {statistics.median(mttd):.0f} / "
                       f"{p95(mttd):.0f} ms | {statistics.median(mttr):.0f} / {p95(mttr):.0f} ms | "
                       f"{statistics.median(inc):.0f} / {p95(inc):.0f} ms | "
                       f"{TARGETS[mode] / 1000:.0f} s | {goal:.0f} ms | "
                       f"{judged / goal:.2f} ({'met' if judged <= goal else 'not met'}) |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--modes", default=",".join(PLAN))
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in PLAN:
            raise SystemExit(f"bench/modes.py: no plan for mode '{m}'")
    work = tempfile.mkdtemp(prefix="guardian-bench-modes-")
    stack = os.path.join(work, "stack")
    mounted = False
    if "disk_full" in modes:
        # A real size-limited filesystem for the whole stack, as the disk_full test uses.
        os.makedirs(stack)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", stack],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"disk_full needs a tmpfs mounted (root): {r.stderr.strip()}")
        mounted = True
    subprocess.run([SEED, stack], check=True)
    base = free_base(4)
    api_ports = (base, base + 1, base + 2, base + 3)  # primary, backup, auth, model
    app_yaml = os.path.join(stack, "app", "app.yaml")
    with open(app_yaml) as f:
        text = f.read().replace(":9101", ":%d" % api_ports[0]).replace(":9102", ":%d" % api_ports[1])
        text = text.replace(":11434", ":%d" % api_ports[3])
    with open(app_yaml, "w") as f:
        f.write(text)
    global LAB
    if "network_unreachable" in modes:
        sys.path.insert(0, os.path.join(ROOT, "chaos", "stack"))
        from netlab import NetLab, can_run
        why = can_run()
        if why:
            raise BenchError("network_unreachable " + why)
        LAB = NetLab(work)
        base = free_base(2)
        LAB.ports = (base, base + 1)
        for p in LAB.ports:
            LAB.listen(p)
    info = machine_info()
    d = Daemon(args.bin_dir, work, "guardian",
               config_text(stack, os.path.abspath(args.bin_dir), free_base(6), api_ports))
    samples = []
    try:
        d.start()
        wait_for("the app ready", 20, lambda: app_ready(d), 0.05)
        for mode in modes:
            run_mode(d, work, mode, args.runs, samples)
    finally:
        for mode in modes:
            subprocess.run([sys.executable, INJECT, mode, "--state-dir", work, "--undo"],
                           capture_output=True)
        d.stop()
        if LAB is not None:
            LAB.close()
        if mounted:
            subprocess.run(["umount", "-l", stack], check=False)
        info["loadavg"]["end"] = os.getloadavg()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(table(samples, modes))
    print()
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, kernel {info['kernel']}; commit "
          f"{info['commit']}{' (dirty)' if info['tree_dirty'] else ''}; {info['date']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "samples": samples}, f, indent=1)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench/modes.py: {e}", file=sys.stderr)
        sys.exit(1)
