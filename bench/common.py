"""What the benchmarks share: their error, bounded waiting, percentiles, a guardiand they run
and read, and a description of the machine and build a figure was measured on."""
import datetime
import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "chaos"))
from harness.stack import free_port_base, stop_process  # noqa: E402,F401  (shared with chaos/run)


class BenchError(Exception):
    pass


def wait_for(what, timeout_s, fn, interval_s=0.02):
    """Polls fn() until it returns something truthy; raises after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def machine_info():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def git(*args):
        try:
            return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    build_type = ""
    try:
        with open(os.path.join(ROOT, "build", "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    build_type = line.split("=", 1)[1].strip()
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": os.uname().release,
        "commit": git("rev-parse", "--short", "HEAD"),
        "tree_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "build_type": build_type,
        "python": sys.version.split()[0],
        # Other work on the machine shows up in the loop-lag tail; record how busy it was.
        "loadavg": {"start": os.getloadavg()},
    }


def p95(values):
    """Nearest-rank 95th percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def yaml_str(s):
    return json.dumps(s)  # a JSON string is a valid YAML scalar


class Daemon:
    """One guardiand process on its own state dir; stop() is safe to call more than once."""

    def __init__(self, bin_dir, work, name, config_text):
        self.bin_dir = bin_dir
        self.state_dir = os.path.join(work, name, "state")
        self.config = os.path.join(work, name, "guardian.yaml")
        self.log_path = os.path.join(work, name, "guardiand.log")
        os.makedirs(os.path.dirname(self.config), exist_ok=True)
        with open(self.config, "w") as f:
            f.write(config_text.replace("@STATE@", yaml_str(self.state_dir)))
        self.proc = None
        self.log = None

    def start(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [os.path.join(self.bin_dir, "guardiand"), "--config", self.config],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        wait_for("guardiand to write status.json", 10,
                 lambda: self._alive() and (self.status() or {}).get("pid") == self.proc.pid)

    def _alive(self):
        if self.proc.poll() is not None:
            raise BenchError(f"guardiand exited with {self.proc.returncode}\n{self.log_tail()}")
        return True

    @property
    def pid(self):
        return self.proc.pid

    def status(self):
        """STATE_DIR/status.json, or None while it is not there yet."""
        try:
            with open(os.path.join(self.state_dir, "status.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def status_with_mtime(self):
        path = os.path.join(self.state_dir, "status.json")
        try:
            mtime = os.stat(path).st_mtime
            with open(path) as f:
                return mtime, json.load(f)
        except (OSError, ValueError):
            return None, None

    def cli(self, *args):
        self._alive()
        r = subprocess.run([os.path.join(self.bin_dir, "guardian"), "--state-dir", self.state_dir,
                            *args], capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise BenchError(f"guardian {' '.join(args)} exited {r.returncode}: {r.stderr}")
        return json.loads(r.stdout)

    def incident(self, incident_id):
        return self.cli("incident", str(incident_id), "--json")

    def newest_incidents(self, limit, check=None):
        args = ["incidents", "--json", "--limit", str(limit)]
        if check:
            args += ["--check", check]
        return self.cli(*args)

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None
