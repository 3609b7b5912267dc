"""The general checks (process, file, filesystem, http, tcp) end to end, with real parts: a real
HTTP server process known by its pidfile, killed and stopped for real; a real file removed; a
real size-limited tmpfs filled; a real port closed. Each remedy is a script the check names as
argv, which stamps a file when it runs, so the test sees what Guardian ran and in what order."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import unittest

from harness import GuardianTestCase, read_or_none

SERVE = """#!/bin/sh
# start.sh: an HTTP server in the background, its pid in the pidfile (as init scripts do)
echo start >> {stamps}
cd {www}
setsid {python} -m http.server {port} --bind 127.0.0.1 </dev/null >/dev/null 2>&1 &
echo $! > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}
"""
STOP = """#!/bin/sh
echo stop >> {stamps}
pid=$(cat {pidfile}) || exit 0
kill -TERM "$pid" 2>/dev/null; kill -CONT "$pid" 2>/dev/null
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.05
done
kill -KILL "$pid" 2>/dev/null; exit 0
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_ok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.0 200")
    except OSError:
        return False


class GeneralChecksTest(GuardianTestCase):

    def script(self, name, text, **kw):
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text.format(**kw))
        os.chmod(path, 0o755)
        return path

    def stamps(self, name):
        return (read_or_none(self.path(name + ".stamps")) or "").split()

    def process_check(self):
        self.port = free_port()
        self.pidfile = self.path("svc.pid")
        www = self.path("www")
        os.makedirs(www)
        kw = dict(stamps=self.path("svc.stamps"), www=www, python=sys.executable, port=self.port,
                  pidfile=self.pidfile)
        start = self.script("start.sh", SERVE, **kw)
        stop = self.script("stop.sh", STOP, **kw)
        subprocess.run([start], check=True)
        self.addCleanup(self.kill_server)
        self.wait_for(lambda: http_ok(self.port), what="the server to answer")
        os.remove(self.path("svc.stamps"))  # the first start is the test's, not Guardian's
        return {"id": "svc", "mode": "process", "interval_ms": 100,
                "params": {"pidfile": self.pidfile, "start": [start], "stop": [stop],
                           "port": self.port, "http_path": "/", "timeout_ms": 500}}

    def kill_server(self):
        pid = self.server_pid()
        if pid:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def server_pid(self):
        try:
            return int(read_or_none(self.pidfile) or 0)
        except ValueError:
            return 0

    def test_process_exit_is_started_again_without_a_stop(self):
        self.write_config([self.process_check()])
        self.start_daemon()
        self.wait_for(lambda: (self.check_status("svc") or {}).get("state") == "ok",
                      what="svc ok")
        old = self.server_pid()
        os.kill(old, signal.SIGKILL)
        inc = self.wait_incident("svc")
        self.assertEqual(inc["state"], "resolved", inc)
        inc = self.incident(inc["id"])
        self.assertTrue(inc["evidence"].startswith("not running:"), inc["evidence"])
        self.assertIn("exited", inc["evidence"])
        # Exited: only started again; a stop script would have had nothing to stop.
        self.assertEqual(self.stamps("svc"), ["start"])
        self.assertNotEqual(self.server_pid(), old)
        self.assertTrue(http_ok(self.port))
        self.assert_step(inc, "verify", "ok", attempt=1)
        self.assertEqual(inc["playbook"], "process")
        self.assertEqual(inc["mode"], "process")

    def test_process_killed_again_after_its_restart_is_started_again(self):
        # While the restarted server is not listening yet, the schedule's probe and the
        # playbook's verify are both refused and both wait for the pidfd: each must still get
        # its answer. One was lost, and the check was never probed again: it stayed failing
        # with the old pid's exit and the second kill went unseen.
        self.write_config([self.process_check()])
        self.start_daemon()
        for n in (1, 2, 3):
            self.wait_for(lambda: (self.check_status("svc") or {}).get("state") == "ok",
                          what=f"svc ok before kill {n}")
            old = self.server_pid()
            os.kill(old, signal.SIGKILL)
            self.wait_for(lambda: len(self.incidents()) == n and all(
                i["state"] == "resolved" for i in self.incidents()), timeout=20,
                what=f"incident {n} resolved")
            self.wait_for(lambda: self.server_pid() != old and http_ok(self.port),
                          what=f"a new server after kill {n}")
        # The schedule goes on: its next probe reads the new pid and finds it answering.
        self.wait_for(lambda: (self.check_status("svc") or {}).get("evidence", "").startswith(
            f"running: pid {self.server_pid()};"), what="svc probed again, the newest pid ok")

    def test_process_that_stops_answering_is_stopped_then_started(self):
        self.write_config([self.process_check()])
        self.start_daemon()
        self.wait_for(lambda: (self.check_status("svc") or {}).get("state") == "ok",
                      what="svc ok")
        old = self.server_pid()
        os.kill(old, signal.SIGSTOP)  # alive, but its port no longer answers
        inc = self.incident(self.wait_incident("svc")["id"])
        self.assertEqual(inc["state"], "resolved", inc)
        self.assertTrue(inc["evidence"].startswith("not answering:"), inc["evidence"])
        self.assertEqual(self.stamps("svc"), ["stop", "start"])
        self.assertNotEqual(self.server_pid(), old)
        self.assertTrue(http_ok(self.port))

    def test_stale_pidfile_is_not_running(self):
        check = self.process_check()
        self.kill_server()
        self.wait_for(lambda: not http_ok(self.port), what="the server to go")
        with open(self.pidfile, "w") as f:
            f.write("999999\n")  # a pid nobody has
        self.write_config([check])
        self.start_daemon()
        inc = self.incident(self.wait_incident("svc")["id"])
        self.assertEqual(inc["state"], "resolved", inc)
        self.assertIn("not running", inc["evidence"])
        self.assertEqual(self.stamps("svc"), ["start"])
        self.assertTrue(http_ok(self.port))

    def test_reused_pid_is_neither_trusted_nor_stopped(self):
        check = self.process_check()
        self.kill_server()
        self.wait_for(lambda: not http_ok(self.port), what="the server to go")
        # The pidfile now names a live stranger that started after the file was written: its
        # pid was reused. Guardian must not take it for the server, nor run stop against it.
        stranger = subprocess.Popen(["sleep", "60"])
        self.addCleanup(stranger.wait)
        self.addCleanup(stranger.kill)
        with open(self.pidfile, "w") as f:
            f.write("%d\n" % stranger.pid)
        written = time.time() - 30
        os.utime(self.pidfile, (written, written))
        self.write_config([check])
        self.start_daemon()
        inc = self.incident(self.wait_incident("svc")["id"])
        self.assertEqual(inc["state"], "resolved", inc)
        self.assertIn("reused pid", inc["evidence"])
        self.assertEqual(self.stamps("svc"), ["start"])
        self.assertIsNone(stranger.poll(), "the stranger was signalled")
        self.assertTrue(http_ok(self.port))

    def test_file_removed_runs_on_fail(self):
        path = self.path("app.conf")
        backup = self.path("app.conf.bak")
        for p in (path, backup):
            with open(p, "w") as f:
                f.write("workers = 4\n")
        restore = self.script("restore.sh", "#!/bin/sh\necho restore >> {s}\ncp {b} {p}\n",
                              s=self.path("cfg.stamps"), b=backup, p=path)
        self.write_config([{"id": "cfg", "mode": "file", "interval_ms": 60000,
                            "params": {"path": path, "on_fail": [restore]}}])
        self.start_daemon()
        self.wait_for(lambda: (self.check_status("cfg") or {}).get("state") == "ok",
                      what="cfg ok")
        os.remove(path)
        inc = self.incident(self.wait_incident("cfg")["id"])
        self.assertEqual(inc["state"], "resolved", inc)
        self.assertIn("is missing", inc["evidence"])
        self.assertEqual(read_or_none(path), "workers = 4\n")
        self.assertEqual(self.stamps("cfg"), ["restore"])
        # The 60 s interval never came round: inotify woke the probe.
        self.assertLess(inc["mttd_ms"], 5000, inc)

    def test_http_failure_runs_on_fail_and_a_failing_command_retries_then_escalates(self):
        port = free_port()
        fix = self.script("fix.sh", "#!/bin/sh\necho fix >> {s}\nexit 3\n", s=self.path("api.stamps"))
        self.write_config([{"id": "api", "mode": "http", "interval_ms": 100, "retries": 1,
                            "params": {"url": "http://127.0.0.1:%d/health" % port,
                                       "timeout_ms": 300, "on_fail": [fix], "verify_ms": 200}}])
        self.start_daemon()  # nothing listens: refused
        inc = self.incident(self.wait_incident("api")["id"])
        self.assertEqual(inc["state"], "escalated", inc)
        self.assertIn("refused", inc["evidence"])
        self.assertEqual(self.stamps("api"), ["fix", "fix"])  # two attempts, no more
        failed = self.assert_step(inc, "remediate", "failed", attempt=1)
        self.assertIn("exited with code 3", failed["message"])
        self.wait_held("api")

    def test_tcp_without_on_fail_only_alerts(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        self.write_config([{"id": "port", "mode": "tcp", "interval_ms": 100, "retries": 0,
                            "params": {"port": port, "timeout_ms": 300}}])
        self.start_daemon()
        self.wait_for(lambda: (self.check_status("port") or {}).get("state") == "ok",
                      what="port ok")
        listener.close()
        inc = self.incident(self.wait_incident("port")["id"])
        self.assertEqual(inc["state"], "escalated", inc)
        step = self.assert_step(inc, "remediate", "failed")
        self.assertIn("only alerts", step["message"])

    def test_tcp_listen_method_reads_the_socket_table_and_heals_a_full_queue(self):
        port = free_port()
        listener = ("import socket, time\n"
                    "s = socket.socket()\n"
                    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                    "s.bind(('127.0.0.1', %d))\n"
                    "s.listen(1)\n"
                    "time.sleep(600)\n" % port)
        with open(self.path("listener.py"), "w") as f:
            f.write(listener)
        self.pidfile = self.path("listener.pid")
        # Stops the listener that never accepts and starts a fresh one.
        restart = self.script(
            "restart.sh",
            "#!/bin/sh\necho restart >> {s}\n"
            "pid=$(cat {pf} 2>/dev/null) && kill -KILL \"$pid\" 2>/dev/null\n"
            "setsid {py} {l} </dev/null >/dev/null 2>&1 &\necho $! > {pf}\n",
            s=self.path("port.stamps"), pf=self.pidfile, py=sys.executable,
            l=self.path("listener.py"))
        subprocess.run([restart], check=True)
        self.addCleanup(self.kill_server)
        os.remove(self.path("port.stamps"))
        self.wait_for(lambda: self.listening(port), what="the listener")
        self.write_config([{"id": "port", "mode": "tcp", "interval_ms": 100, "retries": 0,
                            "params": {"port": port, "method": "listen", "on_fail": [restart],
                                       "verify_ms": 3000}}])
        self.start_daemon()
        self.wait_for(lambda: (self.check_status("port") or {}).get("state") == "ok",
                      what="port ok")
        # A queue of limit 1 that nobody drains: connect probes every 100 ms would fill it and
        # fail within three probes. Reading the socket table adds nothing to it.
        time.sleep(1.0)
        st = self.check_status("port")
        self.assertEqual(st["state"], "ok", st)
        self.assertIn("listening (0 of 1 queued)", json.dumps(st))
        self.assertEqual(self.incidents("port"), [])
        clients = [socket.create_connection(("127.0.0.1", port), timeout=1) for _ in range(2)]
        self.addCleanup(lambda: [c.close() for c in clients])
        inc = self.incident(self.wait_incident("port")["id"])
        self.assertEqual(inc["state"], "resolved", inc)
        self.assertIn("accept queue full (2 waiting, limit 1)", inc["evidence"])
        self.assertEqual(self.stamps("port"), ["restart"])

    def listening(self, port):
        """From /proc/net/tcp, not by connecting: a connect would sit in the queue under test."""
        with open("/proc/net/tcp") as f:
            return any(":%04X" % port == line.split()[1][-5:] and line.split()[3] == "0A"
                       for line in f.readlines()[1:])

    def test_filesystem_over_its_limit_runs_on_fail(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a size-limited tmpfs")
        mnt = self.path("mnt")
        os.makedirs(mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs here: %s" % r.stderr.strip())
        self.addCleanup(subprocess.run, ["umount", "-l", mnt])
        clean = self.script("clean.sh", "#!/bin/sh\necho clean >> {s}\nrm -f {m}/fill\n",
                            s=self.path("tfs.stamps"), m=mnt)
        self.write_config([{"id": "tfs", "mode": "filesystem", "interval_ms": 60000,
                            "params": {"path": mnt, "max_used_percent": 50,
                                       "on_fail": [clean]}}])
        self.start_daemon()
        self.wait_for(lambda: (self.check_status("tfs") or {}).get("state") == "ok",
                      what="tfs ok")
        with open(os.path.join(mnt, "fill"), "wb") as f:
            f.write(b"\0" * (3 << 20))  # 75% of 4 MiB
        inc = self.incident(self.wait_incident("tfs")["id"])
        self.assertEqual(inc["state"], "resolved", inc)
        self.assertIn("used (limit 50.0%)", inc["evidence"])
        self.assertFalse(os.path.exists(os.path.join(mnt, "fill")))
        self.assertEqual(self.stamps("tfs"), ["clean"])
        self.assertLess(inc["mttd_ms"], 5000, inc)  # inotify, not the 60 s interval


class GeneralCheckConfigTest(GuardianTestCase):

    def test_a_check_cannot_use_a_playbook_of_other_modes(self):
        self.write_config([{"id": "svc", "mode": "process", "playbook": "exec",
                            "params": {"pidfile": self.path("x.pid"), "start": ["/bin/true"]}}])
        r = self.run_cli("check-config", self.config_path)
        out = r.stdout + r.stderr
        self.assertNotEqual(r.returncode, 0, out)
        self.assertIn("playbook 'exec' is for mode 'file, filesystem, http, tcp', not 'process'",
                      out)

    def test_a_missing_param_names_the_file_and_line(self):
        self.write_config([{"id": "api", "mode": "http", "params": {"timeout_ms": 5}}])
        r = self.run_cli("check-config", self.config_path)
        out = r.stdout + r.stderr
        self.assertNotEqual(r.returncode, 0, out)
        self.assertIn("missing required param 'url' for mode 'http'", out)
        self.assertIn(self.config_path + ":", out)


if __name__ == "__main__":
    unittest.main()
