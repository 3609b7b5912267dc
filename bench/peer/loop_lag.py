#!/usr/bin/env python3
"""Loop lag while 100 of 1000 checks fail at once (issue goal: p99 under 10 ms).

Starts guardiand with 1000 `tcp` checks every 1 s: 900 against one loopback acceptor, 100
against a second one. Once every check passes, the second acceptor is closed, so 100 checks
fail in the same second and their incidents run (alert only: the `exec` playbook has no command,
so each escalates and the check is held). After --seconds (60, the lag window guardiand keeps)
it reads /v1/status: loop_lag_us p50/p99/max over that window, open incidents, held checks, and
guardiand's CPU over the window. Root is not needed.
"""
import argparse
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "chaos"))
from harness.api import ApiError, GuardianApi  # noqa: E402


class Acceptor:
    """Accepts and closes every connection on a loopback port, on a thread."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._th = threading.Thread(target=self._loop, daemon=True)
        self._th.start()

    def _loop(self):
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        while not self._stop:
            for _ in sel.select(0.1):
                while True:
                    try:
                        c, _ = self.sock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    c.close()
        sel.close()

    def close(self):
        self._stop = True
        self._th.join(2)
        self.sock.close()


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checks", type=int, default=1000)
    ap.add_argument("--failing", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    binary = os.environ.get("GUARDIAN_BIN") or os.path.join(ROOT, "build", "bin", "guardiand")
    work = tempfile.mkdtemp(prefix="guardian-lag-")
    good, bad = Acceptor(), Acceptor()
    lines = [f"state_dir: {json.dumps(os.path.join(work, 'state'))}",
             f"playbook_dirs: [{json.dumps(os.path.join(ROOT, 'playbooks'))}]",
             "checks:"]
    lines += ["  - mode: tcp", "    interval_ms: 1000", "    params: { timeout_ms: 1000 }",
              "    targets:"]
    for i in range(a.checks):
        port = bad.port if i < a.failing else good.port
        lines.append(f"      - {{ id: p{i:04d}, port: {port} }}")
    config = os.path.join(work, "guardian.yaml")
    with open(config, "w") as f:
        f.write("\n".join(lines) + "\n")
    log = open(os.path.join(work, "guardiand.log"), "w")
    proc = subprocess.Popen([binary, "--config", config], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    api = GuardianApi(os.path.join(work, "state", "guardian.sock"), timeout_s=10)
    try:
        deadline = time.time() + 120
        while True:
            try:
                st = api.request("GET", "/v1/status")
                if sum(1 for c in st["checks"] if c["state"] == "ok") == a.checks:
                    break
            except (ApiError, OSError, ValueError):
                pass
            if time.time() > deadline or proc.poll() is not None:
                sys.exit(f"guardiand not ready; see {work}/guardiand.log")
            time.sleep(0.2)
        c0, t0 = cpu_s(proc.pid), time.monotonic()
        bad.close()
        time.sleep(a.seconds)
        c1, t1 = cpu_s(proc.pid), time.monotonic()
        st = api.request("GET", "/v1/status")
        incidents = api.request("GET", f"/v1/incidents?limit={a.failing * 4}")["incidents"]
        res = {
            "checks": a.checks, "failing": a.failing, "window_s": round(t1 - t0, 1),
            "loop_lag_us": st["loop_lag_us"],
            "cpu_pct_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 2),
            "incidents": len(incidents),
            "checks_failing_or_held": sum(1 for c in st["checks"]
                                          if c["state"] != "ok" or c.get("held")),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        good.close()
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
