"""Hostile playbooks: a playbook that tries something the sandbox forbids must fail its step with
a message naming what was refused, escalate (retries 0) and hold its check, touch nothing outside
its declared paths, and leave the daemon alive and healing its other checks."""

import os
import time
import unittest

from harness import GOOD_CONFIG, TIMEOUT_S, GuardianTestCase, read_or_none, read_text, write_atomic

PWNED = "/etc/guardian-pwned"
GARBAGE = "server: [port: {{ 8080\n"


class HostilePlaybookTest(GuardianTestCase):

    def setUp(self):
        super().setUp()
        self.pwned_before = os.path.lexists(PWNED)
        self.addCleanup(self._check_pwned)

    def _check_pwned(self):
        # If a sandbox escape created it, remove it so later runs start clean (the test has
        # already failed on it).
        if not self.pwned_before and os.path.lexists(PWNED):
            os.remove(PWNED)

    def run_hostile(self, playbook, expected, setup=None):
        hostile, _ = self.make_app_file("hostile")
        normal, _ = self.make_app_file("normal", content=GOOD_CONFIG.replace("8080", "8181"))
        normal_good = read_text(normal)
        if setup:
            setup(os.path.dirname(hostile))
        self.write_config([
            self.check("hostile", hostile, playbook=playbook, retries=0),
            self.check("normal", normal),
        ], test_playbooks=True)
        self.start_daemon()
        self.wait_version("hostile", GOOD_CONFIG)
        self.wait_version("normal", normal_good)

        write_atomic(hostile, GARBAGE)
        summary = self.wait_incident("hostile", timeout=TIMEOUT_S * 2)
        inc = self.incident(summary["id"])
        self.assertEqual(inc["state"], "escalated", inc)
        self.assertEqual(inc["playbook"], playbook)
        self.assertEqual(inc["attempts"], 1, "retries 0: one attempt only")
        step = self.assert_step(inc, "remediate", "failed", attempt=1)
        for phrase in expected:
            self.assertIn(phrase, step["message"], inc)
        self.assertIn("gave up after 1 attempt(s)", inc["reason"])
        self.assertIn("remediate failed", inc["reason"])
        self.assertIsNone(inc["recovered_at"])
        self.assert_no_running_steps(inc)
        self.assertFalse([s for s in inc["steps"] if s["phase"] in ("verify", "probe") and s["status"] == "ok"])

        self.wait_held("hostile")
        self.assertIn("escalated", self.check_status("hostile")["hold_reason"])
        self.assertFalse(os.path.lexists(PWNED), "%s was created by playbook %s" % (PWNED, playbook))
        self.assertEqual(read_or_none(hostile), GARBAGE, "the hostile playbook changed nothing")
        self.assertTrue(self.daemon.alive())

        # The daemon is still healing its other check with the shipped playbook.
        write_atomic(normal, GARBAGE)
        self.wait_content(normal, normal_good)
        healed = self.wait_incident("normal")
        self.assertEqual(healed["state"], "resolved", healed)
        self.assertIs(healed["within_target"], True)
        # The held check does not act again while the fault persists.
        self.assertEqual(len(self.incidents("hostile")), 1)
        self.assertTrue(self.check_status("hostile")["held"])
        self.stop_daemon()
        return inc

    def test_hold_survives_restart_and_lifts_when_fixed(self):
        inc = self.run_hostile("hostile_os_execute", ["'os.execute' is not available"])
        hostile = self.path("hostile", "app.yaml")
        # run_hostile stopped the daemon; the hold was persisted and comes back with it.
        self.start_daemon()
        self.wait_for(lambda: self.status_json()["pid"] == self.daemon.pid, what="fresh status.json")
        status = self.check_status("hostile")
        self.assertTrue(status["held"], status)
        self.assertIn("incident %d" % inc["id"], status["hold_reason"])
        # Still broken, still held: no new incident however many probes run.
        time.sleep(1.0)  # five probe intervals
        self.assertEqual(len(self.incidents("hostile")), 1)
        # The operator fixes the file: the automatic hold lifts on the next healthy probe.
        write_atomic(hostile, GOOD_CONFIG)
        self.wait_for(lambda: self.check_status("hostile")["held"] is False, what="the hold to lift")
        self.assertIn("hold lifted", self.daemon.log())
        # Armed again: the next fault opens a new incident (escalated again by this playbook).
        write_atomic(hostile, GARBAGE)
        again = self.wait_incident("hostile", newer_than=inc["id"])
        self.assertEqual(again["state"], "escalated")
        self.stop_daemon()

    def hung_children(self, path):
        """pids of hostile_hung_child's program for this test (its argv holds `path`)."""
        pids = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if path.encode() in argv and any(b"time.sleep(60)" in a for a in argv):
                pids.append(int(pid))
        return pids

    def test_hung_child_is_killed_at_the_phase_deadline(self):
        self.run_hostile("hostile_hung_child", ["ran past its deadline of 1500 ms"])
        hostile = self.path("hostile", "app.yaml")
        self.assertEqual(self.hung_children(hostile), [], "the hung program outlived its phase")

    def test_sigterm_kills_a_running_child_and_exits_cleanly(self):
        hostile, _ = self.make_app_file("hostile")
        self.write_config([self.check("hostile", hostile, playbook="hostile_hung_child", retries=0)],
                          test_playbooks=True)
        self.start_daemon()
        self.wait_version("hostile", GOOD_CONFIG)
        write_atomic(hostile, GARBAGE)
        self.wait_for(lambda: self.hung_children(hostile), what="the playbook's program to run")
        self.stop_daemon()
        self.assertEqual(self.hung_children(hostile), [], "the program outlived guardiand")
        inc = self.incidents("hostile")[0]
        inc = self.incident(inc["id"])
        self.assert_no_running_steps(inc)
        self.assert_step(inc, "remediate", "interrupted")

    def test_os_execute(self):
        self.run_hostile("hostile_os_execute", ["'os.execute' is not available in the playbook sandbox"])

    def test_io_open(self):
        self.run_hostile("hostile_io_open", ["undefined global 'io'"])

    def test_require(self):
        self.run_hostile("hostile_require", ["undefined global 'require'"])

    def test_infinite_loop(self):
        self.run_hostile("hostile_loop", ["instruction budget exceeded"])

    def test_unbounded_memory(self):
        self.run_hostile("hostile_memory", ["not enough memory"])

    def test_write_outside_declared_paths(self):
        self.run_hostile("hostile_write_outside",
                         ["outside what check 'hostile' declares writable", PWNED])

    def test_write_through_dotdot(self):
        self.run_hostile("hostile_traversal", ["outside what check 'hostile' declares writable"])

    def test_write_through_symlink(self):
        self.run_hostile("hostile_symlink_escape", ["outside what check 'hostile' declares writable"],
                         setup=lambda folder: os.symlink("/etc", os.path.join(folder, "escape")))

    def test_shell_string_is_refused_but_argv_runs(self):
        inc = self.run_hostile("hostile_shell_string", ["bad argument #1 to 'run'", "table expected, got string"])
        step = self.assert_step(inc, "remediate", "failed")
        # The argv form ran (and its output reached the step message through guardian.log).
        self.assertIn("argv form: code 0, stdout argv-form-ran", step["message"])
        self.assertFalse(os.path.exists(self.path("hostile", "app.yaml.shell-marker")),
                         "a command-line string went through a shell")


if __name__ == "__main__":
    unittest.main()
