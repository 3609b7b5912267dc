"""Least privilege, on the real daemon and real processes:

- what Guardian spawns for a check (a playbook's guardian.proc.run: on_fail, start, stop) and the
  services it runs start with a minimal environment, never guardiand's own, and as the
  configured user and group with no supplementary groups; an unknown user is a config error,
  and a reload with one keeps the running config;
- the API socket's mode and group decide who may connect: an unprivileged user is refused,
  a member of `api.socket_group` is let in;
- secrets given by reference (secret_file, secret_env) or literally in a field that holds one
  reach what needs them (a server gets the real header) and appear nowhere guardiand writes:
  its log, every GET of the API, status.json, the store's files.

Needs root (it switches users). `nobody` and `nogroup` are Debian's unprivileged user and group.
"""

import glob
import http.server
import json
import os
import re
import secrets
import sqlite3
import stat
import subprocess
import sys
import threading
import unittest

from harness import GUARDIAN, GUARDIAND, LONG_TIMEOUT_S, TIMEOUT_S, GuardianTestCase, read_or_none

NOBODY = 65534
NOGROUP = 65534
# The system's Python: one under /root (pyenv) is out of nobody's reach.
SYSTEM_PYTHON = "/usr/bin/python3"
FIXED_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Reports who it runs as and what environment it was given (as exec handed it over, from
# /proc, not as Python sees it), as JSON, to argv[1] ("-": stdout); then creates argv[2] if
# given (the file the check watches, so the check heals).
REPORT = r"""
import json, os, sys
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
environ = [e for e in open("/proc/self/environ", "rb").read().decode().split("\0") if e]
report = {"uid": status["Uid"].split(), "gid": status["Gid"].split(), "groups": status["Groups"].split(),
          "env": dict(e.split("=", 1) for e in environ)}
text = json.dumps(report)
if sys.argv[1] == "-":
    print("REPORT " + text, flush=True)
else:
    with open(sys.argv[1], "w") as f:
        f.write(text)
if len(sys.argv) > 2:
    open(sys.argv[2], "w").close()
"""


def as_root():
    return os.geteuid() == 0


@unittest.skipUnless(as_root(), "needs root: switches to nobody")
class PrivilegeTestCase(GuardianTestCase):

    def setUp(self):
        super().setUp()
        # The temp dir is 0700: let other users through it (not read it), as they would be
        # through /var/lib or /srv, so that only the modes under test decide what they may do.
        os.chmod(self.tmp, 0o711)
        self.shared = self.path("shared")
        os.makedirs(self.shared)
        os.chmod(self.shared, 0o777)

    def start_with_env(self, extra_env):
        """Starts guardiand with these variables added to its environment."""
        old = {k: os.environ.get(k) for k in extra_env}
        os.environ.update(extra_env)
        try:
            return self.start_daemon()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def assert_runs_as_nobody(self, report):
        self.assertEqual(report["uid"], [str(NOBODY)] * 4, report)
        self.assertEqual(report["gid"], [str(NOGROUP)] * 4, report)
        # No supplementary groups at all: none of root's survive the switch.
        self.assertEqual(report["groups"], [], report)


class SpawnedProcessTest(PrivilegeTestCase):

    def file_check(self, check_id, **extra):
        watched = os.path.join(self.shared, check_id + ".watched")
        report = os.path.join(self.shared, check_id + ".report")
        check = {"id": check_id, "mode": "file",
                 "params": {"path": watched, "verify_ms": 5000,
                            "on_fail": [SYSTEM_PYTHON, "-c", REPORT, report, watched]}}
        check.update(extra)
        return check, watched, report

    def read_report(self, path):
        self.wait_for(lambda: read_or_none(path), TIMEOUT_S, "the program's report " + path)
        return json.loads(read_or_none(path))

    def test_check_programs_get_a_cleared_environment_and_the_configured_user(self):
        dropped, _, dropped_report = self.file_check(
            "dropped", user="nobody", group="nogroup",
            env={"CONFIGURED_VAR": "configured-value", "LANG": "C"})
        plain, _, plain_report = self.file_check("plain")
        self.write_config([dropped, plain])
        self.start_with_env({"PLANTED_SECRET": "planted-in-guardiand-123"})

        for check_id in ("dropped", "plain"):
            inc = self.wait_incident(check_id)
            self.assertEqual(inc["state"], "resolved", inc)

        report = self.read_report(dropped_report)
        self.assert_runs_as_nobody(report)
        # Exactly the fixed set plus what the config gives; LANG replaced, not doubled.
        self.assertEqual(report["env"], {"PATH": FIXED_PATH, "LANG": "C",
                                         "GUARDIAN_CHECK": "dropped",
                                         "CONFIGURED_VAR": "configured-value"})

        # Without `user`, it runs as guardiand does (root), still without guardiand's environment.
        report = self.read_report(plain_report)
        self.assertEqual(report["uid"], ["0"] * 4, report)
        self.assertEqual(report["env"], {"PATH": FIXED_PATH, "LANG": "C.UTF-8",
                                         "GUARDIAN_CHECK": "plain"})
        self.assertNotIn("planted-in-guardiand-123", json.dumps(report))

    def test_service_runs_as_the_configured_user_with_a_cleared_environment(self):
        self.write_config([], services=[{
            "name": "worker", "argv": [SYSTEM_PYTHON, "-c", REPORT + "\nimport time; time.sleep(600)", "-"],
            "user": "nobody", "group": "nogroup",
            "env": {"SERVICE_VAR": "service-value",
                    "API_TOKEN": {"secret_env": "GUARDIAN_IT_SERVICE_TOKEN"}}}])
        self.start_with_env({"PLANTED_SECRET": "planted-in-guardiand-456",
                             "GUARDIAN_IT_SERVICE_TOKEN": "service-token-from-env-789"})
        log = os.path.join(self.state_dir, "services", "worker.log")

        def report():
            m = re.search(r"^REPORT (.*)$", read_or_none(log) or "", re.M)
            return json.loads(m.group(1)) if m else None
        r = self.wait_for(report, TIMEOUT_S, "the service's report in " + log)
        self.assert_runs_as_nobody(r)
        self.assertEqual(r["env"], {"PATH": FIXED_PATH, "LANG": "C.UTF-8",
                                    "GUARDIAN_SERVICE": "worker",
                                    "GUARDIAN_STATE_DIR": self.state_dir,
                                    "SERVICE_VAR": "service-value",
                                    "API_TOKEN": "service-token-from-env-789"})
        # The token reached the service; guardiand itself never shows it.
        status = self.api("GET", "/v1/status", expect=200).text
        self.assertNotIn("service-token-from-env-789", status + self.daemon.log())

    def test_unknown_user_is_a_config_error_and_a_reload_keeps_the_running_config(self):
        check, watched, report = self.file_check("dropped", user="nobody", group="nogroup")
        self.write_config([check])
        self.start_daemon()
        self.assertEqual(self.wait_incident("dropped")["state"], "resolved")
        self.assert_runs_as_nobody(self.read_report(report))

        bad = dict(check, user="no-such-user-zz")
        bad_path = self.write_config([bad], path=self.path("bad.yaml"))
        for argv in ([GUARDIAND, "--check-config", bad_path], [GUARDIAN, "check-config", bad_path]):
            r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertRegex(r.stderr, r"(?m)^%s:\d+:\d+: checks\[0\]\.user: no user named "
                             r"'no-such-user-zz' on this host$" % re.escape(bad_path))

        self.write_config([bad])
        r = self.run_cli("reload")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("checks[0].user: no user named 'no-such-user-zz'", r.stdout + r.stderr)
        st = self.api("GET", "/v1/status", expect=200).json
        self.assertTrue(any("no user named 'no-such-user-zz'" in e for e in st["config_errors"]),
                        st["config_errors"])
        # The running config still acts, as nobody.
        os.unlink(report)
        os.unlink(watched)
        inc = self.wait_for(lambda: [i for i in self.incidents("dropped") if i["id"] > 1
                                     and i["state"] == "resolved"], TIMEOUT_S, "a second heal")
        self.assertTrue(inc)
        self.assert_runs_as_nobody(self.read_report(report))


# Connects to a Unix socket as whoever runs it, and asks for /v1/health: prints the status line,
# or the errno of a refused connect.
CONNECT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("errno", e.errno)
    sys.exit(0)
s.sendall(b"GET /v1/health HTTP/1.0\r\nHost: x\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.split(b"\r\n", 1)[0].decode())
"""


class ApiSocketPermissionTest(PrivilegeTestCase):

    def connect_as(self, group, extra_groups=()):
        r = subprocess.run([SYSTEM_PYTHON, "-c", CONNECT, self.api_socket], capture_output=True,
                           text=True, timeout=TIMEOUT_S, user="nobody", group=group,
                           extra_groups=list(extra_groups), cwd="/")
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def write_one_check(self, **top):
        app, _ = self.make_app_file()
        self.write_config([self.check("app", app)], **top)

    def test_default_socket_refuses_an_unprivileged_user(self):
        self.write_one_check()
        self.start_daemon()
        st = os.lstat(self.api_socket)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660, oct(st.st_mode))
        self.assertEqual((st.st_uid, st.st_gid), (0, 0))  # guardiand's user and group
        # The state dir lets anyone through; the socket's own mode is what refuses.
        self.assertTrue(os.stat(self.state_dir).st_mode & stat.S_IXOTH)
        self.assertEqual(self.connect_as("nogroup"), "errno 13")  # EACCES
        self.assertEqual(self.api("GET", "/v1/health", expect=200).json["status"], "ok")

    def test_socket_group_lets_its_members_in_and_no_one_else(self):
        self.write_one_check(api={"socket_group": "nogroup", "socket_mode": "0660"})
        self.start_daemon()
        st = os.lstat(self.api_socket)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660, oct(st.st_mode))
        self.assertEqual((st.st_uid, st.st_gid), (0, NOGROUP))
        self.assertEqual(self.connect_as("nogroup"), "HTTP/1.1 200 OK")
        # A member through a supplementary group is let in too; without it, refused.
        self.assertEqual(self.connect_as("daemon", extra_groups=["nogroup"]), "HTTP/1.1 200 OK")
        self.assertEqual(self.connect_as("daemon"), "errno 13")

    def test_unknown_socket_group_is_a_config_error(self):
        self.write_one_check(api={"socket_group": "no-such-group-zz"})
        r = subprocess.run([GUARDIAND, "--check-config", self.config_path], capture_output=True,
                           text=True, timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertRegex(r.stderr, r"(?m)^%s:\d+:\d+: api\.socket_group: no group named "
                         r"'no-such-group-zz' on this host$" % re.escape(self.config_path))


class EchoServer(http.server.ThreadingHTTPServer):
    """Refuses every GET with 401 and an error page that quotes the credentials it was sent, as
    a careless server would; records what it got."""

    daemon_threads = True

    def __init__(self):
        self.received = []
        super().__init__(("127.0.0.1", 0), EchoHandler)


class EchoHandler(http.server.BaseHTTPRequestHandler):

    def do_GET(self):
        got = {k: self.headers.get(k) for k in ("Authorization", "X-Api-Key", "X-Auth-Token")}
        self.server.received.append(got)
        body = ("denied: " + " ".join("%s=%s" % kv for kv in got.items())).encode()
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class SecretRedactionTest(PrivilegeTestCase):

    def start_server(self):
        server = EchoServer()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return server

    def test_secrets_reach_the_server_and_appear_nowhere_guardiand_writes(self):
        from_file = "tokA-" + secrets.token_hex(12)
        from_env = "tokB-" + secrets.token_hex(12)
        literal = "tokC-" + secrets.token_hex(12)
        planted = "tokD-" + secrets.token_hex(12)  # in guardiand's environment, never configured
        all_secrets = (from_file, from_env, literal, planted)
        secret_file = self.path("auth.secret")
        with open(secret_file, "w") as f:
            f.write("Bearer %s\n" % from_file)
        os.chmod(secret_file, 0o600)
        server = self.start_server()
        seen = os.path.join(self.shared, "on_fail.seen")
        # on_fail prints what it was given (its env's API_KEY, its argv) and keeps a copy, so the
        # test can tell the secrets arrived; then fails, so the incident escalates.
        on_fail = [sys.executable, "-c",
                   "import os, sys; t = os.environ.get('API_KEY', '') + ' ' + sys.argv[-1] + ' ' "
                   "+ os.environ.get('PLANTED', 'no-planted'); open(sys.argv[1], 'w').write(t); "
                   "print('stdout', t); print('stderr', t, file=sys.stderr); sys.exit(1)",
                   seen]
        check = {"id": "web", "mode": "http", "playbook": "leaky_secrets",
                 "env": {"API_KEY": {"secret_env": "GUARDIAN_IT_API_KEY"}},
                 "params": {"url": "http://127.0.0.1:%d/check" % server.server_port,
                            "timeout_ms": 2000, "on_fail": on_fail,
                            "headers": {"Authorization": {"secret_file": secret_file},
                                        "X-Api-Key": {"secret_env": "GUARDIAN_IT_API_KEY"},
                                        "X-Auth-Token": literal}}}
        self.write_config([check], test_playbooks=True)
        self.start_with_env({"GUARDIAN_IT_API_KEY": from_env, "PLANTED": planted})
        inc = self.wait_incident("web", timeout=LONG_TIMEOUT_S)
        self.assertEqual(inc["state"], "escalated", inc)
        r = self.api("POST", "/v1/checks/web/run", {"dry_run": True}, expect=200)

        # The secrets did their job: the server got the real headers, the program its env.
        self.assertIn({"Authorization": "Bearer " + from_file, "X-Api-Key": from_env,
                       "X-Auth-Token": literal}, server.received)
        self.assertEqual(read_or_none(seen),
                         "%s Bearer %s no-planted" % (from_env, from_file))

        # They appear nowhere guardiand writes.
        inc_id = inc["id"]
        places = {"guardiand log": self.daemon.log(), "POST /v1/checks/web/run (dry run)": r.text}
        for path in ("/v1/health", "/v1/status", "/v1/incidents", "/v1/incidents/%d" % inc_id,
                     "/v1/mttr", "/v1/chaos-runs", "/metrics"):
            places["GET " + path] = self.api("GET", path, expect=200).text
        for path in glob.glob(os.path.join(self.state_dir, "**"), recursive=True):
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    places[path] = f.read().decode("latin-1")
        self.assertTrue(os.path.exists(os.path.join(self.state_dir, "guardian.db-wal")))
        self.assertIn(os.path.join(self.state_dir, "status.json"), places)
        for where, text in places.items():
            for secret in all_secrets:
                self.assertNotIn(secret, text, "a secret leaked into " + where)

        # They did flow into what guardiand writes, and were redacted there.
        inc = self.api("GET", "/v1/incidents/%d" % inc["id"], expect=200).json
        self.assertRegex(inc["evidence"], r"answered 401 in \d+ ms: denied: "
                         r"Authorization=\[redacted\] X-Api-Key=\[redacted\] "
                         r"X-Auth-Token=\[redacted\]$")
        step = self.assert_step(inc, "remediate", status="failed")["message"]
        self.assertIn("leaky: [redacted] / [redacted] / stdout stdout [redacted] [redacted]",
                      step)
        log = self.daemon.log()
        self.assertIn("leaky: got [redacted] and [redacted]", log)
        self.assertIn("leaky: the token alone is [redacted]", log)

        # The audit trail recorded the call with the secret in its argv, redacted, and its hash
        # chain covers the row as stored.
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.state_dir, "guardian.db"),
                             uri=True)
        details = [d for (d,) in db.execute("SELECT detail FROM events WHERE kind='action'")]
        db.close()
        self.assertTrue(any("guardian.proc.run" in d and "Bearer [redacted]" not in d
                            and "[redacted]" in d for d in details), details)
        r = self.run_cli("audit", "verify")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
