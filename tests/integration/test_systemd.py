"""guardiand under systemd: the sd_notify protocol on a real NOTIFY_SOCKET (READY, STATUS,
WATCHDOG pings from the loop, RELOADING, STOPPING), journald priority prefixes on stderr when
JOURNAL_STREAM is set, and the shipped unit file (config/guardiand.service).

No systemd is needed: the test binds the AF_UNIX datagram socket systemd would, and reads what
the daemon sends there."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import GUARDIAND, SOURCE, TIMEOUT_S, Daemon, GuardianTestCase, read_text

UNIT = os.path.join(SOURCE, "config", "guardiand.service")
SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "LISTEN_FDS",
               "LISTEN_PID", "INVOCATION_ID")
BROKEN = "checks: [ unterminated\n"


def fields(datagram):
    """'A=1\\nB=x' -> {'A': '1', 'B': 'x'}."""
    out = {}
    for line in datagram.split("\n"):
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


class SystemdTestCase(GuardianTestCase):

    def start_with_env(self, env_extra, split_stderr=False):
        """Starts guardiand with the systemd variables of this process removed and `env_extra`
        added. With split_stderr, stdout goes to its own file (self.stdout_path) and the
        Daemon's log is stderr alone."""
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
        env.update(env_extra)
        n = len(self.daemons) + 1
        log_path = self.path("guardiand-%d.log" % n)
        self.stdout_path = self.path("guardiand-%d.stdout" % n)
        with open(log_path, "wb") as log, open(self.stdout_path, "wb") as out:
            proc = subprocess.Popen([GUARDIAND, "--config", self.config_path],
                                    stdout=out if split_stderr else log, stderr=log,
                                    stdin=subprocess.DEVNULL, env=env)
        d = Daemon(proc, log_path, self.config_path)
        self.daemons.append(d)
        self.daemon = d
        self.wait_ready(d)
        return d

    def write_one_check(self, **top):
        self.app, _ = self.make_app_file("app")
        self.write_config([self.check("app", self.app)], **top)


class NotifyTest(SystemdTestCase):

    def setUp(self):
        super().setUp()
        self.sock_path = self.path("notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(self.sock.close)
        self.sock.bind(self.sock_path)
        self.sock.setblocking(False)
        self.messages = []  # (monotonic arrival time, {field: value})

    def drain(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            self.messages.append((time.monotonic(), fields(data.decode("utf-8", "replace"))))

    def wait_message(self, pred, after, what, timeout=TIMEOUT_S):
        """Waits for a datagram at index >= after that satisfies pred; returns its index + 1 (the
        position to search from next, so the order of messages is asserted too)."""
        def found():
            self.drain()
            for i in range(after, len(self.messages)):
                if pred(self.messages[i][1]):
                    return i + 1
            return None
        return self.wait_for(found, timeout, "a datagram with %s on NOTIFY_SOCKET (got %r)"
                             % (what, [m for _, m in self.messages[after:]]))

    def start_notified(self):
        self.write_one_check()
        return self.start_with_env({"NOTIFY_SOCKET": self.sock_path, "WATCHDOG_USEC": "400000"})

    def status_after(self, pos):
        return [m["STATUS"] for _, m in self.messages[pos:] if "STATUS" in m]

    def test_ready_watchdog_reload_and_stop(self):
        d = self.start_notified()

        # READY=1 once the loop is set up, with a status line and the main pid.
        pos = self.wait_message(lambda m: m.get("READY") == "1", 0, "READY=1")
        ready = self.messages[pos - 1][1]
        self.assertEqual(ready.get("MAINPID"), str(d.pid), ready)
        self.assertRegex(ready.get("STATUS", ""), r"^1 checks, \d+ playbooks, 0 open incidents$")
        self.assertNotIn("RELOADING", ready)

        # WATCHDOG_USEC=400000 -> a ping every 200 ms, from the loop.
        self.wait_log("systemd watchdog: 400 ms, pinging every 200 ms")
        # libsystemd is opened only because NOTIFY_SOCKET is set (see below).
        self.assertIn("libsystemd.so", read_text("/proc/%d/maps" % d.pid))
        start = time.monotonic()

        def pings():
            self.drain()
            return sum(1 for t, m in self.messages if t >= start and m.get("WATCHDOG") == "1") >= 3
        self.wait_for(pings, 1.5, "3 WATCHDOG=1 pings within 1.5 s", daemon=d)

        # SIGHUP with a good config: RELOADING=1, then READY=1 again.
        pos = len(self.messages)
        d.proc.send_signal(signal.SIGHUP)
        pos = self.wait_message(lambda m: m.get("RELOADING") == "1", pos, "RELOADING=1")
        self.assertRegex(self.messages[pos - 1][1].get("MONOTONIC_USEC", ""), r"^\d+$")
        pos = self.wait_message(lambda m: m.get("READY") == "1", pos, "READY=1 after the reload")
        self.assertNotIn("rejected", self.messages[pos - 1][1].get("STATUS", ""))
        self.wait_log("reloaded: 1 checks")

        # SIGHUP with a broken file: rejected, and STATUS says so.
        good = read_text(self.config_path)
        with open(self.config_path, "a") as f:
            f.write(BROKEN)
        d.proc.send_signal(signal.SIGHUP)
        pos = self.wait_message(lambda m: m.get("RELOADING") == "1", pos, "RELOADING=1")
        pos = self.wait_message(lambda m: m.get("READY") == "1", pos, "READY=1 after the rejection")
        self.assertRegex(self.messages[pos - 1][1].get("STATUS", ""),
                         r"; reload rejected: [1-9]\d* errors$")
        self.assertTrue(d.alive())

        # A good reload clears the note.
        with open(self.config_path, "w") as f:
            f.write(good)
        d.proc.send_signal(signal.SIGHUP)
        pos = self.wait_message(lambda m: m.get("RELOADING") == "1", pos, "RELOADING=1")
        pos = self.wait_message(lambda m: m.get("READY") == "1", pos, "READY=1 after the fix")
        self.assertNotIn("rejected", self.messages[pos - 1][1].get("STATUS", ""))

        # The loop still pings after the reloads.
        pos = self.wait_message(lambda m: m.get("WATCHDOG") == "1", pos, "WATCHDOG=1 after reloads")

        # SIGTERM: STOPPING=1, exit 0, every handle closed (the watchdog timer too).
        self.stop_daemon(d)
        self.drain()
        self.assertTrue(any(m.get("STOPPING") == "1" for _, m in self.messages[pos:]),
                        [m for _, m in self.messages[pos:]])

    def test_pings_are_withheld_while_the_loop_or_the_store_is_stalled(self):
        # POST /v1/debug/stall exists in test builds only (GUARDIAN_TEST_HOOKS).
        self.write_one_check()
        d = self.start_with_env({"NOTIFY_SOCKET": self.sock_path, "WATCHDOG_USEC": "1000000"})
        self.wait_log("systemd watchdog: 1000 ms, pinging every 500 ms")
        # A receiver thread stamps each datagram when it arrives, not when the test looks.
        stop = threading.Event()

        def receive():
            while not stop.is_set():
                self.drain()
                time.sleep(0.01)
        t = threading.Thread(target=receive, daemon=True)
        t.start()
        self.addCleanup(lambda: (stop.set(), t.join()))

        def pings(since, until=None):
            return [at for at, m in list(self.messages)
                    if m.get("WATCHDOG") == "1" and at >= since and (until is None or at <= until)]

        def withheld(since, what):
            return [at for at, m in list(self.messages) if at >= since
                    and m.get("STATUS", "").startswith("watchdog ping withheld: " + what)]

        start = time.monotonic()
        self.wait_for(lambda: len(pings(start)) >= 2, 3, "2 pings", daemon=d)
        for bad in ({}, {"loop_ms": 1, "store_ms": 1}, {"loop_ms": 0}, {"loop_ms": 60001},
                    {"cpu_ms": 5}, {"loop_ms": "5"}):
            self.api("POST", "/v1/debug/stall", bad, expect=400)

        # The loop wedged for 2 s: no ping while it is stuck, and the first tick after it
        # withholds its ping too (the stall was longer than a ping period), then pings resume.
        t0 = time.monotonic()
        self.api("POST", "/v1/debug/stall", {"loop_ms": 2000}, expect=200)
        t1 = time.monotonic()
        self.assertGreaterEqual(t1 - t0, 1.9)
        self.assertEqual(pings(t0 + 0.05, t1 - 0.05), [])
        at = self.wait_for(lambda: withheld(t1 - 0.05, "loop stalled"), 2, "the ping withheld",
                           daemon=d)[0]
        self.assertEqual(pings(t1 - 0.05, at), [], "a ping went out before the withheld one")
        self.wait_log("watchdog: withholding the ping: loop stalled")
        self.wait_for(lambda: pings(at), 2, "pings again after the stall", daemon=d)
        self.wait_log("watchdog: healthy again")

        # The store thread wedged for 3 s while the loop runs on: the API still answers from
        # memory, and the pings stop once the store has not answered for a ping period.
        t2 = time.monotonic()
        self.api("POST", "/v1/debug/stall", {"store_ms": 3000}, expect=200)
        self.assertEqual(self.api("GET", "/v1/health", expect=200).json["pid"], d.pid)
        at = self.wait_for(lambda: withheld(t2, "store has not answered"), 3,
                           "the ping withheld for the store", daemon=d)[0]
        self.assertEqual(pings(at, t2 + 2.9), [], "pinged while the store was still stuck")
        self.wait_for(lambda: pings(t2 + 3.0), 3, "pings again after the store stall", daemon=d)
        wd = self.api("GET", "/v1/status", expect=200).json["watchdog"]
        self.assertEqual(wd["ping_period_ms"], 500)
        self.assertGreaterEqual(wd["withheld"], 2)
        self.assertEqual(wd["withheld_reason"], "")
        self.assertTrue(d.alive())

    def test_watchdog_pid_of_another_process_disables_pings(self):
        # sd_watchdog_enabled() honours WATCHDOG_PID: the watchdog is someone else's.
        self.write_one_check()
        d = self.start_with_env({"NOTIFY_SOCKET": self.sock_path, "WATCHDOG_USEC": "400000",
                                 "WATCHDOG_PID": str(os.getpid())})
        pos = self.wait_message(lambda m: m.get("READY") == "1", 0, "READY=1")
        # A full reload round trip, well over one would-be ping period (200 ms) of loop time.
        d.proc.send_signal(signal.SIGHUP)
        pos = self.wait_message(lambda m: m.get("READY") == "1", pos, "READY=1 after the reload")
        started = self.messages[0][0]
        self.wait_for(lambda: time.monotonic() - started > 0.6, what="0.6 s of daemon time", daemon=d)
        self.stop_daemon(d)
        self.drain()
        self.assertFalse([m for _, m in self.messages if "WATCHDOG" in m])
        self.assertNotIn("systemd watchdog", d.log())
        self.assertTrue(any(m.get("STOPPING") == "1" for _, m in self.messages))


class JournalLogTest(SystemdTestCase):

    def test_priority_prefixes_under_journal_stream(self):
        self.write_one_check()
        d = self.start_with_env({"JOURNAL_STREAM": "1:1"}, split_stderr=True)
        self.wait_log("started:")
        # A warning: a changed state_dir is applied only at the next start.
        self.write_config([self.check("app", self.app)], state_dir=self.path("other-state"))
        d.proc.send_signal(signal.SIGHUP)
        self.wait_log("needs a restart")
        self.wait_log("reloaded: 1 checks")
        # Errors: a broken file is rejected.
        with open(self.config_path, "a") as f:
            f.write(BROKEN)
        d.proc.send_signal(signal.SIGHUP)
        self.wait_log("the running config stays in effect")
        self.stop_daemon(d)

        lines = [l for l in d.log().splitlines() if l.strip()]
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^<[2-7]>", "every stderr line carries a syslog priority")
            self.assertNotRegex(line, r"^<\d>\d{4}-\d\d-\d\d", "no timestamp: journald adds it")

        def prefix_of(needle):
            hits = [l for l in lines if needle in l]
            self.assertTrue(hits, "no line with %r in:\n%s" % (needle, "\n".join(lines)))
            return {l[:3] for l in hits}
        self.assertEqual(prefix_of("started:"), {"<6>"})
        self.assertEqual(prefix_of("guardiand stopped"), {"<6>"})
        self.assertEqual(prefix_of("needs a restart"), {"<4>"})
        self.assertEqual(prefix_of("reload rejected"), {"<3>"})
        self.assertEqual(read_text(self.stdout_path), "", "under the journal, logs go to stderr")

    def test_plain_pattern_without_journal_stream(self):
        self.write_one_check()
        d = self.start_with_env({})
        self.wait_log("started:")
        # Not started by systemd: libsystemd is never loaded.
        self.assertNotIn("libsystemd.so", read_text("/proc/%d/maps" % d.pid))
        self.stop_daemon(d)
        started = next(l for l in d.log().splitlines() if "started:" in l)
        self.assertRegex(started, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} .*info.* guardiand \d+ started:")


class UnitFileTest(unittest.TestCase):

    def unit_settings(self):
        settings = {}
        for line in read_text(UNIT).splitlines():
            line = line.strip()
            if line and not line.startswith(("#", ";", "[")) and "=" in line:
                k, v = line.split("=", 1)
                settings.setdefault(k, []).append(v)
        return settings

    def test_unit_declares_notify_watchdog_and_reload(self):
        s = self.unit_settings()
        self.assertEqual(s.get("Type"), ["notify"])
        self.assertEqual(s.get("NotifyAccess"), ["main"])
        self.assertTrue(s.get("WatchdogSec"))
        self.assertEqual(s.get("ExecReload"), ["/bin/kill -HUP $MAINPID"])
        self.assertEqual(s.get("KillMode"), ["mixed"])
        self.assertIn("/var/lib/guardian", " ".join(s.get("ReadWritePaths", [])))

    def verify(self, path):
        r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True,
                           timeout=60)
        # Unknown keys and bad values are only warnings (exit 0): any line naming the unit fails.
        problems = [l for l in (r.stdout + r.stderr).splitlines()
                    if os.path.basename(path) in l]
        return r.returncode, problems, r.stdout + r.stderr

    def test_systemd_analyze_verify(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze is not installed")
        rc, problems, out = self.verify(UNIT)
        missing_binary = re.compile(r"Command /usr/local/bin/guardiand is not executable")
        if rc != 0 or problems:
            if not problems or not all(missing_binary.search(p) for p in problems):
                self.fail("systemd-analyze verify %s:\n%s" % (UNIT, out))
            # Not installed here: verify a copy that runs the built binary instead.
            if not os.access(GUARDIAND, os.X_OK):
                self.fail("%s is not built" % GUARDIAND)
            tmp = tempfile.mkdtemp(prefix="guardian-unit-")
            self.addCleanup(shutil.rmtree, tmp, True)
            copy = os.path.join(tmp, "guardiand.service")
            with open(UNIT, encoding="utf-8") as f:
                text = f.read()
            self.assertIn("ExecStart=/usr/local/bin/guardiand ", text)
            with open(copy, "w", encoding="utf-8") as f:
                f.write(text.replace("ExecStart=/usr/local/bin/guardiand ", "ExecStart=%s " % GUARDIAND))
            rc, problems, out = self.verify(copy)
        self.assertEqual(rc, 0, out)
        self.assertEqual(problems, [], out)


if __name__ == "__main__":
    unittest.main()
