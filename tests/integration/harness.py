"""Shared helpers for Guardian's integration tests.

Every test drives the real binaries: it writes a guardian.yaml into a fresh temp dir, starts
`guardiand --config FILE` with its output in a log file, breaks real files, and reads what the
daemon did through `guardian ... --json` (the daemon's API on its Unix socket, or with
`--offline` the store a killed daemon left). Nothing is mocked.

Environment (set by tests/CMakeLists.txt; defaults let a developer run a file by hand):
  GUARDIAN_BIN     folder holding guardiand and guardian (default: <repo>/build/bin)
  GUARDIAN_SOURCE  the repository root (default: two folders above this file)
  GUARDIAN_KEEP_TMP=1 keeps each test's temp dir (its path is printed) for a post-mortem.

Every wait is bounded: `wait_for` polls every 50 ms and fails with the daemon log's tail.
Timeouts are generous (an ASan build of the daemon is several times slower), polls are short.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.environ.get("GUARDIAN_SOURCE") or os.path.join(HERE, "..", ".."))
BIN = os.path.abspath(os.environ.get("GUARDIAN_BIN") or os.path.join(SOURCE, "build", "bin"))
GUARDIAND = os.path.join(BIN, "guardiand")
GUARDIAN = os.path.join(BIN, "guardian")
REPO_PLAYBOOKS = os.path.join(SOURCE, "playbooks")
TEST_PLAYBOOKS = os.path.join(SOURCE, "tests", "integration", "playbooks")

POLL_S = 0.05
TIMEOUT_S = 10.0      # one heal, one status update, one log line
LONG_TIMEOUT_S = 25.0  # several heals in a row, restarts, slow playbooks
TERMINAL_STATES = ("resolved", "escalated")

GOOD_CONFIG = "server:\n  port: 8080\n  host: 127.0.0.1\nname: demo\n"


def yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar
    raise TypeError("cannot write %r as a YAML scalar" % (v,))


def _is_scalar_like(v):
    return not isinstance(v, (dict, list)) or (
        isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v))


def _inline(v):
    if isinstance(v, list):
        return "[" + ", ".join(yaml_scalar(x) for x in v) + "]"
    return yaml_scalar(v)


def to_yaml(value, indent=0):
    """Block-style YAML for dicts, lists of dicts and lists of scalars (enough for guardian.yaml)."""
    pad = " " * indent
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if _is_scalar_like(v):
                out.append("%s%s: %s\n" % (pad, k, _inline(v)))
            else:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 2)))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                body = to_yaml(item, indent + 2)
                out.append(pad + "- " + body[indent + 2:])
            else:
                out.append("%s- %s\n" % (pad, _inline(item)))
    else:
        raise TypeError("top level must be a mapping or a list")
    return "".join(out)


def read_text(path):
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        return f.read()


def read_or_none(path):
    try:
        return read_text(path)
    except FileNotFoundError:
        return None


def each_process(part):
    """(pid, entries) for every process whose /proc/PID/`part` (cmdline, environ: entries split
    at NUL bytes) can be read now."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/%s" % (name, part), "rb") as f:
                yield int(name), f.read().split(b"\0")
        except OSError:
            continue


def write_atomic(path, text):
    """Replace `path` in one rename, so the detector never sees a half-written file."""
    tmp = "%s.it-tmp-%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket (the daemon's API socket)."""

    def __init__(self, socket_path, timeout=TIMEOUT_S):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.socket_path)
        except OSError:
            s.close()
            raise
        self.sock = s


class ApiResponse:
    """One HTTP answer: status, headers (lower-case names), raw body, and the body parsed as JSON
    (None when it is not JSON)."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.text = body.decode("utf-8", "replace")
        try:
            self.json = json.loads(self.text)
        except ValueError:
            self.json = None

    def __repr__(self):
        return "<HTTP %d %s>" % (self.status, self.text[:2000])


def http_request(method, path, body=None, socket_path=None, host_port=None, headers=None,
                 timeout=TIMEOUT_S):
    """One request on a fresh connection, to a Unix socket (socket_path) or TCP ("HOST:PORT").
    `body`: None, bytes, str, or anything else (sent as JSON)."""
    if socket_path:
        conn = UnixHTTPConnection(socket_path, timeout=timeout)
    else:
        host, port = host_port.rsplit(":", 1)
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode("utf-8")
    try:
        try:
            conn.request(method, path, body=body, headers=hdrs)
        except (BrokenPipeError, ConnectionResetError):
            # http.client sends the body after the headers; a server that refuses on the headers
            # alone (413) answers and closes first. Its answer is still there to read.
            pass
        resp = conn.getresponse()
        data = resp.read()
        return ApiResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


class Daemon:
    """One guardiand process and its log file."""

    def __init__(self, proc, log_path, config_path):
        self.proc = proc
        self.log_path = log_path
        self.config_path = config_path

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        return read_or_none(self.log_path) or ""

    def log_tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:])


class GuardianTestCase(unittest.TestCase):
    """Base class: a temp dir, a config writer, daemon start/stop, CLI access and bounded waits."""

    maxDiff = None

    def setUp(self):
        super().setUp()
        for exe in (GUARDIAND, GUARDIAN):
            if not os.access(exe, os.X_OK):
                self.fail("%s is not built (set GUARDIAN_BIN or build first)" % exe)
        # Short paths under /tmp: a Unix socket path must fit in 108 bytes, and Lua shortens long
        # chunk names in messages (see test_daemon).
        self.tmp = tempfile.mkdtemp(prefix="guardian-it-", dir="/tmp" if os.path.isdir("/tmp") else None)
        self.state_dir = os.path.join(self.tmp, "state")
        self.config_path = os.path.join(self.tmp, "guardian.yaml")
        self.daemons = []
        self.daemon = None
        self._log_count = 0
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        # Runs even when the test (or setUp after this point) failed: no daemon outlives a test.
        self.stop_all_daemons()
        if os.environ.get("GUARDIAN_KEEP_TMP"):
            print("kept", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def stop_all_daemons(self):
        """SIGTERM first (a daemon stopping cleanly also stops the services it runs), then
        SIGKILL what is still there."""
        for d in self.daemons:
            if d.alive():
                try:
                    d.proc.terminate()
                    d.proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
            if d.alive():
                try:
                    d.proc.kill()
                except ProcessLookupError:
                    pass
            try:
                d.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    # --- files and config ------------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def make_app_file(self, name="app", content=GOOD_CONFIG, defaults=None, bak=None):
        """Creates tmp/<name>/app.yaml (and optionally app.defaults.yaml, app.yaml.bak).
        Each watched file gets its own folder: a check may write only inside its file's folder."""
        folder = self.path(name)
        os.makedirs(folder, exist_ok=True)
        app = os.path.join(folder, "app.yaml")
        if content is not None:
            with open(app, "w", encoding="utf-8") as f:
                f.write(content)
        defaults_path = None
        if defaults is not None:
            defaults_path = os.path.join(folder, "app.defaults.yaml")
            with open(defaults_path, "w", encoding="utf-8") as f:
                f.write(defaults)
        if bak is not None:
            with open(app + ".bak", "w", encoding="utf-8") as f:
                f.write(bak)
        return app, defaults_path

    @staticmethod
    def check(check_id, path, required_keys=("server.port",), defaults_file=None, playbook=None,
              retries=None, **params):
        params = dict({"path": path, "required_keys": list(required_keys)}, **params)
        if defaults_file:
            params["defaults_file"] = defaults_file
        c = {"id": check_id, "mode": "missing_config"}
        if playbook:
            c["playbook"] = playbook
        if retries is not None:
            c["retries"] = retries
        c["params"] = params
        return c

    def config_dict(self, checks, test_playbooks=False, playbook_dirs=None, **top):
        dirs = playbook_dirs if playbook_dirs is not None else (
            [REPO_PLAYBOOKS] + ([TEST_PLAYBOOKS] if test_playbooks else []))
        cfg = {
            "state_dir": self.state_dir,
            "playbook_dirs": dirs,
            "log_level": "info",
            "defaults": {"interval_ms": 200, "debounce": 1, "jitter": 0.0},
            "budget": {"max_actions": 50, "window_ms": 3600000},
            "retry": {"backoff_base_ms": 100, "backoff_max_ms": 500},
        }
        cfg.update(top)
        cfg["checks"] = checks
        return cfg

    def write_config(self, checks, path=None, **kw):
        path = path or self.config_path
        with open(path, "w", encoding="utf-8") as f:
            f.write(to_yaml(self.config_dict(checks, **kw)))
        return path

    # --- the daemon ------------------------------------------------------------------------

    def start_daemon(self, config_path=None, wait_ready=True, timeout=TIMEOUT_S, env=None):
        """`env`: variables added to the daemon's environment (e.g. GUARDIAN_CRASH_AT)."""
        config_path = config_path or self.config_path
        self._log_count += 1
        log_path = self.path("guardiand-%d.log" % self._log_count)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([GUARDIAND, "--config", config_path], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=dict(os.environ, **env) if env else None)
        d = Daemon(proc, log_path, config_path)
        self.daemons.append(d)
        if wait_ready:
            self.daemon = d
            self.wait_ready(d, timeout)
        return d

    def status_json(self):
        try:
            with open(os.path.join(self.state_dir, "status.json"), encoding="utf-8") as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def wait_ready(self, d, timeout=TIMEOUT_S):
        # A restart finds the previous run's status.json: wait for one written by this process.
        def ready():
            if not d.alive():
                self.fail("guardiand exited with %s before it was ready; log:\n%s"
                          % (d.proc.returncode, d.log_tail()))
            st = self.status_json()
            return st is not None and st.get("pid") == d.pid
        self.wait_for(ready, timeout, "guardiand %d to write status.json" % d.pid, daemon=d)

    def stop_daemon(self, d=None, timeout=15.0):
        """SIGTERM: must exit 0, close every handle and say so."""
        d = d or self.daemon
        self.assertTrue(d.alive(), "guardiand died before it was stopped; log:\n" + d.log_tail())
        d.proc.send_signal(signal.SIGTERM)
        try:
            rc = d.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait(timeout=10)
            self.fail("guardiand did not stop within %.0f s of SIGTERM; log:\n%s" % (timeout, d.log_tail()))
        log = d.log()
        self.assertEqual(rc, 0, "guardiand exit code after SIGTERM; log:\n" + d.log_tail())
        self.assertNotIn("leaked handle", log)
        self.assertIn("guardiand stopped", log)
        if d is self.daemon:
            self.daemon = None
        return rc

    def kill_daemon(self, d=None):
        d = d or self.daemon
        d.proc.kill()
        d.proc.wait(timeout=10)
        if d is self.daemon:
            self.daemon = None

    def all_logs(self):
        return "".join(d.log() for d in self.daemons)

    # --- CLI -------------------------------------------------------------------------------

    def run_cli(self, *args, state_dir=None, timeout=TIMEOUT_S, env=None):
        """`env`: variables added to (None values: removed from) this process's environment."""
        argv = [GUARDIAN]
        if state_dir is not False:
            argv += ["--state-dir", state_dir or self.state_dir]
        argv += list(args)
        full_env = None
        if env is not None:
            full_env = dict(os.environ)
            for k, v in env.items():
                if v is None:
                    full_env.pop(k, None)
                else:
                    full_env[k] = v
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env)

    # --- the API over its Unix socket ----------------------------------------------------------

    @property
    def api_socket(self):
        """Where the daemon listens by default: STATE_DIR/guardian.sock."""
        return os.path.join(self.state_dir, "guardian.sock")

    def api(self, method, path, body=None, expect=None, socket_path=None, **kw):
        """One request to the daemon's API socket; with `expect`, asserts the HTTP status."""
        r = http_request(method, path, body=body, socket_path=socket_path or self.api_socket, **kw)
        if expect is not None and r.status != expect:
            tail = ("\n--- guardiand log tail ---\n" + self.daemon.log_tail()) if self.daemon else ""
            self.fail("%s %s: HTTP %d (wanted %d): %s%s" % (method, path, r.status, expect, r.text, tail))
        return r

    def cli(self, *args, expect_rc=0, **kw):
        """`guardian --state-dir STATE ARGS --json`, parsed."""
        r = self.run_cli(*(list(args) + ["--json"]), **kw)
        if r.returncode != expect_rc:
            self.fail("guardian %s: exit %d (wanted %d)\nstdout: %s\nstderr: %s"
                      % (" ".join(args), r.returncode, expect_rc, r.stdout, r.stderr))
        return json.loads(r.stdout) if expect_rc == 0 else r

    def daemon_alive(self):
        return any(d.alive() for d in self.daemons)

    def read_args(self):
        """With no daemon running (killed, stopped), read commands go to the store it left."""
        return [] if self.daemon_alive() else ["--offline"]

    def incidents(self, check_id=None):
        args = ["incidents"] + (["--check", check_id] if check_id else [])
        return self.cli(*(self.read_args() + args))

    def incident(self, incident_id):
        return self.cli(*(self.read_args() + ["incident", str(incident_id)]))

    def check_status(self, check_id):
        st = self.status_json() or {}
        for c in st.get("checks", []):
            if c.get("id") == check_id:
                return c
        return None

    # --- waiting ---------------------------------------------------------------------------

    def wait_for(self, predicate, timeout=TIMEOUT_S, what="condition", daemon=None):
        """Polls `predicate` every 50 ms until it returns something truthy, and returns that.
        Fails after `timeout` s (or at once if the daemon died) with the daemon log's tail."""
        d = daemon or self.daemon
        deadline = time.monotonic() + timeout
        last_error = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
                last_error = None
            except self.failureException:
                raise
            except Exception as e:  # transient: a file being replaced, a JSON read mid-write
                last_error = e
            if d is not None and not d.alive():
                self.fail("guardiand exited (%s) while waiting for %s; log:\n%s"
                          % (d.proc.returncode, what, d.log_tail()))
            if time.monotonic() >= deadline:
                msg = "timed out after %.1f s waiting for %s" % (timeout, what)
                if last_error is not None:
                    msg += " (last error: %r)" % (last_error,)
                if d is not None:
                    msg += "\n--- guardiand log tail ---\n" + d.log_tail()
                self.fail(msg)
            time.sleep(POLL_S)

    def wait_log(self, needle, d=None, timeout=TIMEOUT_S):
        d = d or self.daemon
        return self.wait_for(lambda: needle in d.log(), timeout, "log line %r" % needle, daemon=d)

    def versions_dir(self, check_id):
        return os.path.join(self.state_dir, "checks", check_id, "versions")

    def wait_version(self, check_id, content, timeout=TIMEOUT_S):
        """Waits until the detector kept `content` as a last-known-good version."""
        def kept():
            folder = self.versions_dir(check_id)
            if not os.path.isdir(folder):
                return False
            names = sorted(n for n in os.listdir(folder) if n.endswith(".yaml"))
            return bool(names) and read_text(os.path.join(folder, names[-1])) == content
        self.wait_for(kept, timeout, "check %s to keep a last-known-good version" % check_id)

    def wait_content(self, path, content, timeout=TIMEOUT_S):
        return self.wait_for(lambda: read_or_none(path) == content, timeout,
                             "%s to hold the expected content again" % path)

    def wait_incident(self, check_id, states=TERMINAL_STATES, newer_than=0, timeout=TIMEOUT_S):
        """Waits for the newest incident of `check_id` with id > newer_than to reach one of `states`."""
        def done():
            for inc in self.incidents(check_id):
                if inc["id"] > newer_than and inc["state"] in states:
                    return inc
            return None
        return self.wait_for(done, timeout, "an incident of %s in state %s" % (check_id, "/".join(states)))

    def wait_held(self, check_id, timeout=TIMEOUT_S):
        return self.wait_for(lambda: (self.check_status(check_id) or {}).get("held") is True, timeout,
                             "check %s to show held in status.json" % check_id)

    # --- assertions ------------------------------------------------------------------------

    def assert_step(self, inc, phase, status="ok", attempt=None):
        steps = [s for s in inc["steps"] if s["phase"] == phase and s["status"] == status
                 and (attempt is None or s["attempt"] == attempt)]
        self.assertTrue(steps, "no %s step with status %s in incident:\n%s"
                        % (phase, status, json.dumps(inc, indent=2)))
        return steps[0]

    def assert_no_running_steps(self, inc):
        running = [s for s in inc["steps"] if s["status"] == "running" or s["ended_at"] is None]
        self.assertEqual(running, [], "steps left running:\n" + json.dumps(inc, indent=2))
