"""Guardian adapter for the watchdog peer benchmark (its README: `Measuring another daemon`).

Turns the harness's neutral spec into a guardian.yaml of general checks (docs/config.md,
"General checks"), runs `guardiand --config` in the foreground on it, and reads Guardian's own
view of each check from its API on the Unix socket (/v1/status, /v1/incidents):

  svc  process_port -> mode `process`: the pidfile's process is watched through a pidfd (its exit
                       wakes a probe at once) and its HTTP port probed every PROBE_MS; playbook
                       `process` runs the spec's stop (only while it still runs) and start argv
  cfg  file_exists  -> mode `file`: inotify on the folder; playbook `exec` runs on_fail
  tfs  fs_space     -> mode `filesystem`: inotify on the mount, statvfs; playbook `exec`
  api  http         -> mode `http`: GET every PROBE_MS with the spec's timeout; playbook `exec`
  extra port checks -> one `tcp` check template with the list of targets, every 1 s; TCP_METHOD
                       `connect` (default) or `listen`

Every remedy is the spec's own script, started as argv without a shell, so its first line
stamps the moment Guardian acted. Use: ../shared/bench/peer/run.sh --adapter
bench/peer/guardian_adapter.py (as root). GUARDIAN_BIN picks the guardiand binary (default:
build/bin/guardiand of this checkout); PROBE_MS the interval of the probe-only checks.
"""
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "chaos"))
from harness.api import ApiError, GuardianApi  # noqa: E402

NAME = "guardian"
# Where no event tells a hang (svc's port, the api), a probe every PROBE_MS without jitter: a
# hang is then judged at most PROBE_MS + timeout after it began (the goal: timeout + 100 ms).
PROBE_MS = int(os.environ.get("PROBE_MS", "90"))
EXTRA_INTERVAL_MS = 1000  # the extra port checks: Monit's `set daemon 1`
# How the extra port checks look: `connect` (as Monit does) or `listen` (this host's socket
# table, one sock_diag dump shared by all; same answer for a local port, no handshake).
TCP_METHOD = os.environ.get("TCP_METHOD", "connect")


def guardiand_bin():
    return os.environ.get("GUARDIAN_BIN") or os.path.join(ROOT, "build", "bin", "guardiand")


def version():
    out = subprocess.run([guardiand_bin(), "--version"], capture_output=True, text=True)
    return "Guardian " + (out.stdout.strip().split()[-1] if out.stdout.strip() else "?")


def _q(s):
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(str(s))


class Adapter:
    def __init__(self, spec, rundir, extra_port_checks=0, extra_port=None):
        self.spec = spec
        self.rundir = rundir
        self.extra = extra_port_checks
        self.extra_port = extra_port
        os.makedirs(rundir, exist_ok=True)
        self.state_dir = os.path.join(rundir, "state")
        self.config = os.path.join(rundir, "guardian.yaml")
        self.log = os.path.join(rundir, "guardiand.log")
        self.socket = os.path.join(self.state_dir, "guardian.sock")
        self.api = GuardianApi(self.socket, timeout_s=5)
        self.proc = None
        self.started_at = None
        with open(self.config, "w") as f:
            f.write(self.config_text())

    # ------------------------------------------------------------ config
    def config_text(self):
        c = self.spec["checks"]
        svc, cfg, tfs, api = c["svc"], c["cfg"], c["tfs"], c["api"]
        lines = [
            f"state_dir: {_q(self.state_dir)}",
            f"playbook_dirs: [{_q(os.path.join(ROOT, 'playbooks'))}]",
            "log_level: info",
            "defaults: { interval_ms: 1000, debounce: 1, jitter: 0.1 }",
            # The harness injects each failure many times in a row: no per-hour action cap, and
            # no fault-storm breaker (30 attempts a minute across checks by default; the
            # harness makes up to 40, and a tripped breaker holds every check for a minute).
            "budget: { max_actions: 1000, window_ms: 3600000 }",
            "breaker: { max_actions: 1000, window_ms: 60000 }",
            "checks:",
            "  - id: svc",
            "    mode: process",
            f"    interval_ms: {PROBE_MS}",
            "    jitter: 0",
            "    params:",
            f"      pidfile: {_q(svc['pidfile'])}",
            f"      start: [{_q(svc['start'])}]",
            f"      stop: [{_q(svc['stop'])}]",
            f"      host: {_q(svc['host'])}",
            f"      port: {svc['port']}",
            f"      http_path: {_q(svc['http_path'])}",
            f"      timeout_ms: {int(svc['timeout_s'] * 1000)}",
            "  - id: cfg",
            "    mode: file",
            f"    params: {{ path: {_q(cfg['path'])}, on_fail: [{_q(cfg['on_fail'])}] }}",
            "  - id: tfs",
            "    mode: filesystem",
            "    params:",
            f"      path: {_q(tfs['path'])}",
            f"      max_used_percent: {tfs['max_pct']}",
            f"      on_fail: [{_q(tfs['on_fail'])}]",
            "  - id: api",
            "    mode: http",
            f"    interval_ms: {PROBE_MS}",
            "    jitter: 0",
            "    params:",
            f"      url: {_q('http://%s:%d%s' % (api['host'], api['port'], api['http_path']))}",
            f"      timeout_ms: {int(api['timeout_s'] * 1000)}",
            f"      on_fail: [{_q(api['on_fail'])}]",
        ]
        if self.extra:
            # One check template, a target per check (docs/config.md, "Check templates").
            lines += ["  - mode: tcp", f"    interval_ms: {EXTRA_INTERVAL_MS}",
                      f"    params: {{ host: \"127.0.0.1\", port: {self.extra_port}, timeout_ms: 1000, "
                      f"method: {TCP_METHOD} }}",
                      "    targets:"]
            lines += [f"      - {{ id: p{i:04d} }}" for i in range(self.extra)]
        return "\n".join(lines) + "\n"

    def describe(self):
        c = self.spec["checks"]
        d = (f"state dir and API socket in the temp dir; budget 1000 actions/hour per check, "
             "breaker 1000 attempts/minute across checks; "
             f"`svc`: mode `process` (pidfile watched through a pidfd, GET {c['svc']['http_path']} "
             f"every {PROBE_MS} ms with a {c['svc']['timeout_s']} s timeout; playbook `process`: "
             "stop.sh only while the process still runs, then start.sh); "
             "`cfg`: mode `file` (inotify; playbook `exec` runs restore.sh); "
             f"`tfs`: mode `filesystem` (inotify on the mount + statvfs, > {c['tfs']['max_pct']}% "
             "used; `exec` runs cleanup.sh); "
             f"`api`: mode `http` (GET {c['api']['http_path']} every {PROBE_MS} ms, "
             f"{c['api']['timeout_s']} s timeout; `exec` runs remedy.sh); other checks every 1 s")
        if self.extra:
            how = ("connect to 127.0.0.1:P, 1 s timeout" if TCP_METHOD == "connect" else
                   "`method: listen`: 127.0.0.1:P looked up in this host's listening sockets")
            d += (f"; plus {self.extra} × mode `tcp` ({how}, every {EXTRA_INTERVAL_MS} ms, "
                  "alert only; one loopback acceptor)")
        return d

    # ----------------------------------------------------------- process
    def start(self):
        t = subprocess.run([guardiand_bin(), "--check-config", self.config],
                           capture_output=True, text=True)
        if t.returncode != 0:
            raise RuntimeError("guardiand --check-config failed:\n" + t.stdout + t.stderr)
        self.out = open(self.log, "w")
        self.started_at = time.time()
        self.proc = subprocess.Popen([guardiand_bin(), "--config", self.config],
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "out", None):
            self.out.close()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    # ------------------------------------------------------------ status
    def status(self):
        return self.api.request("GET", "/v1/status")

    def wait_ready(self, timeout=60):
        """Every check probed since the start, passing, with no incident open."""
        names = {"svc", "cfg", "tfs", "api"} | {f"p{i:04d}" for i in range(self.extra)}
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"guardiand exited with {self.proc.returncode}; see {self.log}")
            try:
                st = self.status()
                ok = {c["id"] for c in st.get("checks", [])
                      if c.get("state") == "ok" and not c.get("incident")}
                if names <= ok and not st.get("open_incidents"):
                    return True
            except (ApiError, OSError, ValueError):
                pass
            time.sleep(0.1)
        return False

    def confirmed_ok(self, check, since, timeout=15):
        """When Guardian itself first saw `check` healthy again after `since` (epoch s): the
        recovered_at of the incident it opened for the failure (its verified probe)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                doc = self.api.request("GET", f"/v1/incidents?check={check}&limit=5")
                times = [i["recovered_at"] / 1000.0 for i in doc.get("incidents", [])
                         if i.get("state") == "resolved" and i.get("recovered_at")
                         and i["recovered_at"] / 1000.0 > since]
                if times:
                    return min(times)
            except (ApiError, OSError, ValueError):
                pass
            time.sleep(0.05)
        return None
