"""The demo stack under a real guardiand, for the failure-mode tests.

StackTestCase lays out the stack with chaos/stack/seed in the test's temp dir (TMP/stack, the
layout chaos/inject expects with --state-dir TMP), runs the real demo-app as guardiand's service
`app` on a free port range, and breaks it with the real injectors in chaos/inject.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request

from harness import BIN, SOURCE, TIMEOUT_S, GuardianTestCase
from ports import free_port  # noqa: F401  (tests import it from here)

DEMO_APP = os.path.join(BIN, "demo-app")
INJECT = os.path.join(SOURCE, "chaos", "inject")
SEED = os.path.join(SOURCE, "chaos", "stack", "seed")


def free_port_range(n):
    """A base port with n free ports after it (checked by binding each)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class StackTestCase(GuardianTestCase):
    def setUp(self):
        super().setUp()
        if not os.access(DEMO_APP, os.X_OK):
            self.fail("%s is not built" % DEMO_APP)
        self.stack = self.path("stack")
        subprocess.run([SEED, self.stack], check=True)
        self.port = free_port_range(6)
        self.addCleanup(self._kill_stack_processes)
        self.addCleanup(self._undo_injections)

    def _kill_stack_processes(self):
        """Runs last: any app instance of this test's stack still alive (a stale instance, or
        the app of a guardiand the test killed) is killed, so no test leaks processes."""
        self.stop_all_daemons()  # first, or the supervisor would restart what is killed here
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read().decode(errors="replace")
            except OSError:
                continue
            if self.stack in cmd and int(pid) != os.getpid():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _undo_injections(self):
        for mode in ("port_conflict", "slow_boot", "db_corruption"):
            subprocess.run([sys.executable, INJECT, mode, "--state-dir", self.tmp, "--undo"],
                           capture_output=True)

    def app_service(self, **over):
        run = os.path.join(self.stack, "run")
        svc = {
            "name": "app",
            "argv": [DEMO_APP, "--config", os.path.join(self.stack, "app", "app.yaml")],
            "cwd": self.stack,
            "status_file": os.path.join(run, "status.json"),
            "flags_file": os.path.join(run, "flags.json"),
            "port": {"preferred": self.port, "range": [self.port, self.port + 5]},
            "restart": {"backoff_base_ms": 200, "backoff_max_ms": 5000, "healthy_after_ms": 10000},
            "stop_grace_ms": 3000,
        }
        svc.update(over)
        return svc

    def start_stack(self, checks, **top):
        top.setdefault("port_registry", os.path.join(self.stack, "run", "ports.json"))
        self.write_config(checks, services=[self.app_service()], **top)
        self.start_daemon()
        self.wait_for(lambda: self.service().get("state") == "ready", TIMEOUT_S, "the app ready")

    def service(self, name="app"):
        st = self.api("GET", "/v1/status", expect=200).json
        for s in st["services"]:
            if s["name"] == name:
                return s
        return {}

    def app_get(self, path, port=None):
        port = port or self.service()["port"]
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return json.loads(r.read())

    def inject(self, mode, *args):
        r = subprocess.run([sys.executable, INJECT, mode, "--state-dir", self.tmp] + list(args),
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            self.fail("chaos/inject %s failed: %s\n%s" % (mode, r.stderr, r.stdout))
        return json.loads(r.stdout)

    def wait_incident(self, check_id, state="resolved", timeout=TIMEOUT_S, after=0):
        found = {}

        def done():
            for inc in self.incidents(check_id):
                if inc["id"] > after and inc["state"] == state:
                    found.update(inc)
                    return True
            return False
        self.wait_for(done, timeout, "a %s incident of %s" % (state, check_id))
        return self.incident(found["id"])
