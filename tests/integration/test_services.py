"""guardiand supervising real processes (`services:`): restart after a crash with the failure
counted, the whole group stopped with guardiand, and adoption (not a second copy) when guardiand
itself is killed and started again."""

import json
import os
import signal
import time
import unittest

from harness import GuardianTestCase, LONG_TIMEOUT_S, TIMEOUT_S, each_process

# Reports its pid and readiness in status.json, like the demo app does.
SERVICE = r'''
import json, os, sys, time
run = sys.argv[1]
time.sleep(0.1)
tmp = os.path.join(run, "status.json.tmp")
with open(tmp, "w") as f:
    json.dump({"pid": os.getpid(), "state": "ready"}, f)
os.replace(tmp, os.path.join(run, "status.json"))
while True:
    time.sleep(1)
'''


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


class ServicesTest(GuardianTestCase):
    def setUp(self):
        super().setUp()
        self.run_dir = self.path("run")
        os.makedirs(self.run_dir)
        script = self.path("svc.py")
        with open(script, "w") as f:
            f.write(SERVICE)
        self.service = {
            "name": "svc",
            "argv": ["python3", script, self.run_dir],
            "status_file": os.path.join(self.run_dir, "status.json"),
            "port": {"preferred": 18555, "range": [18555, 18560]},
            "restart": {"backoff_base_ms": 100, "backoff_max_ms": 1000, "healthy_after_ms": 60000},
            "stop_grace_ms": 2000,
        }
        self.seen_pids = set()
        self.addCleanup(self._kill_services)

    def _kill_services(self):
        for pid in self.seen_pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

    def services(self):
        st = self.api("GET", "/v1/status", expect=200).json
        return {s["name"]: s for s in st["services"]}

    def wait_service(self, pred, what, timeout=TIMEOUT_S):
        found = {}

        def check():
            s = self.services().get("svc")
            if s and s.get("pid"):
                self.seen_pids.add(s["pid"])
            if s and pred(s):
                found.update(s)
                return True
            return False
        self.wait_for(check, timeout, what)
        return found

    def test_a_crashed_service_is_restarted_and_its_port_registered(self):
        self.write_config([], services=[self.service])
        self.start_daemon()
        first = self.wait_service(lambda s: s["state"] == "ready", "svc ready")
        self.assertEqual(first["port"], 18555)
        self.assertGreater(first["start_ticks"], 0)
        with open(os.path.join(self.state_dir, "ports.json")) as f:
            self.assertEqual(json.load(f)["services"]["svc"]["port"], 18555)

        os.kill(first["pid"], signal.SIGKILL)
        second = self.wait_service(lambda s: s["state"] == "ready" and s["pid"] != first["pid"],
                                   "svc restarted")
        self.assertEqual(second["failures"], 1)  # not reset: healthy_after_ms is a minute
        self.assertEqual(second["starts"], 2)
        self.assertEqual(second["last_exit"]["signal"], signal.SIGKILL)
        self.assertFalse(second["last_exit"]["asked"])
        self.assertFalse(alive(first["pid"]))
        log = self.daemon.log()
        self.assertIn("exited unasked (killed by signal 9)", log)
        text = self.run_cli("status").stdout
        row = [l for l in text.splitlines() if l.startswith("svc ")]
        self.assertEqual(len(row), 1, text)
        self.assertEqual(row[0].split()[:7],
                         ["svc", "ready", str(second["pid"]), "18555", "2", "1", "signal"])
        self.stop_daemon()
        # Stopping guardiand stops the service (stop_on_exit defaults to true).
        self.wait_for(lambda: not alive(second["pid"]), TIMEOUT_S, "service stopped with guardiand")

    def test_a_killed_guardiand_adopts_its_running_service_on_restart(self):
        self.write_config([], services=[self.service])
        self.start_daemon()
        first = self.wait_service(lambda s: s["state"] == "ready", "svc ready")
        self.kill_daemon()
        self.assertTrue(alive(first["pid"]), "the service dies with a SIGKILLed guardiand")
        self.start_daemon()
        again = self.wait_service(lambda s: s["state"] == "ready", "svc ready after restart")
        self.assertEqual(again["pid"], first["pid"])
        self.assertEqual(again["start_ticks"], first["start_ticks"])
        self.assertTrue(again["adopted"])
        self.assertEqual(again["starts"], 0)
        self.assertIn("still running; adopted it", self.daemon.log())
        # An adopted service is stopped like one of our own.
        self.stop_daemon()
        self.wait_for(lambda: not alive(first["pid"]), TIMEOUT_S, "adopted service stopped")

    def test_a_guardiand_killed_before_recording_a_restart_adopts_that_process(self):
        # The record is written after the spawn, from the thread pool. Killed in between,
        # guardiand leaves a record naming the process before: its successor finds the new one
        # by the GUARDIAN_SERVICE and GUARDIAN_STATE_DIR in its environment and adopts it,
        # instead of starting a second copy beside an orphan that holds the port.
        self.write_config([], services=[self.service])
        self.start_daemon(env={"GUARDIAN_CRASH_AT": "service:spawned#2"})
        first = self.wait_service(lambda s: s["state"] == "ready", "svc ready")
        d = self.daemon
        os.kill(first["pid"], signal.SIGKILL)
        self.wait_for(lambda: not d.alive(), TIMEOUT_S, "guardiand to die right after a restart")
        d.proc.wait(timeout=10)
        self.daemon = None
        with open(os.path.join(self.state_dir, "services", "svc.json")) as f:
            self.assertEqual(json.load(f)["pid"], first["pid"])  # the restart went unrecorded
        orphans = self.service_processes()
        self.assertEqual(len(orphans), 1, orphans)
        self.seen_pids.update(orphans)

        self.start_daemon()
        again = self.wait_service(lambda s: s["state"] == "ready", "svc ready after restart")
        self.assertEqual((again["pid"], again["adopted"], again["starts"]),
                         (orphans[0], True, 0))
        self.assertIn("by its environment (no live record); adopted it", self.daemon.log())
        self.assertEqual(self.service_processes(), orphans)  # not a second copy
        with open(os.path.join(self.state_dir, "services", "svc.json")) as f:
            self.assertEqual(json.load(f)["pid"], orphans[0])
        self.stop_daemon()
        self.wait_for(lambda: not alive(orphans[0]), TIMEOUT_S, "adopted service stopped")

    def service_processes(self):
        """Live group leaders started for svc by a guardiand with this state dir."""
        found = []
        for pid, entries in each_process("environ"):
            env = dict(e.split(b"=", 1) for e in entries if b"=" in e)
            if (env.get(b"GUARDIAN_SERVICE") == b"svc"
                    and env.get(b"GUARDIAN_STATE_DIR") == self.state_dir.encode()
                    and alive(pid) and os.getpgid(pid) == pid):
                found.append(pid)
        return sorted(found)

    def test_a_service_that_execs_after_its_start_is_adopted_too(self):
        # Started through a wrapper that execs the real program later (as a #! script's env or
        # `ip netns exec` do): its exe changes, its pid and start time do not. Not adopting it
        # would leave it running, orphaned, holding the port a second copy then cannot bind.
        script = self.service["argv"][1]
        self.service["argv"] = ["/bin/sh", "-c", 'sleep 0.3; exec python3 "$0" "$1"', script,
                                self.run_dir]
        self.write_config([], services=[self.service])
        self.start_daemon()
        first = self.wait_service(lambda s: s["state"] == "ready", "svc ready")
        self.assertIn("/bin/", first["exe"])  # recorded before the exec
        self.kill_daemon()
        self.start_daemon()
        again = self.wait_service(lambda s: s["state"] == "ready", "svc ready after restart")
        self.assertEqual((again["pid"], again["adopted"], again["starts"]),
                         (first["pid"], True, 0))
        self.assertNotIn("not adopted", self.daemon.log())
        self.stop_daemon()
        self.wait_for(lambda: not alive(first["pid"]), TIMEOUT_S, "adopted service stopped")

    def test_a_service_whose_program_is_missing_backs_off_without_giving_up(self):
        svc = dict(self.service, argv=[self.path("no-such-program")])
        self.write_config([], services=[svc])
        self.start_daemon()
        s = self.wait_service(lambda s: s["failures"] >= 4, "several failed starts", LONG_TIMEOUT_S)
        self.assertIn(s["state"], ("backoff", "starting"))
        self.assertIn("cannot start", self.daemon.log())
        self.stop_daemon()


if __name__ == "__main__":
    unittest.main()
