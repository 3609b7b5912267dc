"""Crash recovery: guardiand is SIGKILLed while an incident's playbook runs, started again on the
same config, and must finish the incident (resolved, or escalated with a reason), leave no step
`running`, journal the cut-short step as `interrupted`, and leave the watched file valid."""

import os
import time
import unittest

from harness import (GOOD_CONFIG, LONG_TIMEOUT_S, TERMINAL_STATES, GuardianTestCase, read_or_none,
                     write_atomic)

GARBAGE = "server: [port: {{ 8080\n"


class CrashRecoveryTest(GuardianTestCase):

    def start_with(self, playbook, retries=None):
        self.app, _ = self.make_app_file("app")
        self.write_config([self.check("app", self.app, playbook=playbook, retries=retries)],
                          test_playbooks=True)
        self.start_daemon()
        self.wait_version("app", GOOD_CONFIG)

    def first_incident_id(self):
        return self.wait_for(lambda: [i["id"] for i in self.incidents("app")][-1:], what="an incident")[0]

    def wait_step_running(self, incident_id, phase):
        def running():
            inc = self.incident(incident_id)
            return any(s["phase"] == phase and s["status"] == "running" for s in inc["steps"]) and inc
        return self.wait_for(running, what="the %s step of incident %d to be running" % (phase, incident_id))

    def assert_interrupted(self, journal_at_kill, inc):
        """Every step that was running when the process died is now journaled as interrupted."""
        now = {(s["phase"], s["attempt"], s["started_at"]): s for s in inc["steps"]}
        for s in journal_at_kill["steps"]:
            if s["status"] != "running":
                continue
            key = (s["phase"], s["attempt"], s["started_at"])
            self.assertIn(key, now, inc)
            self.assertEqual(now[key]["status"], "interrupted", inc)
            self.assertIsNotNone(now[key]["ended_at"])

    def restart_and_finish(self, incident_id, journal_at_kill):
        """Starts guardiand again and checks how the interrupted incident ends."""
        self.assertIsNone(self.daemon)
        self.start_daemon()
        self.wait_for(lambda: self.incident(incident_id)["state"] in TERMINAL_STATES, LONG_TIMEOUT_S,
                      "incident %d to be resolved or escalated after the restart" % incident_id)
        inc = self.incident(incident_id)
        if inc["state"] == "escalated":
            self.assertTrue(inc["reason"], "an escalation says why")
        else:
            self.assertEqual(inc["state"], "resolved", inc)
            self.assertIsInstance(inc["mttr_ms"], int)
        self.assert_no_running_steps(inc)
        self.assert_interrupted(journal_at_kill, inc)
        # The restart re-probed before acting.
        self.assertTrue([s for s in inc["steps"] if s["phase"] == "probe"
                         and s["started_at"] > max([s["started_at"] for s in journal_at_kill["steps"]] or [0])],
                        inc)
        self.wait_content(self.app, GOOD_CONFIG)
        # Nothing left open, and the daemon is healthy and stops cleanly.
        self.wait_for(lambda: self.status_json()["open_incidents"] == 0
                      and self.status_json()["pid"] == self.daemon.pid, what="no open incidents")
        self.assertEqual([i for i in self.incidents() if i["state"] not in TERMINAL_STATES], [])
        self.stop_daemon()
        return inc

    def test_kill_during_remediate(self):
        self.start_with("slow_restore")
        write_atomic(self.app, GARBAGE)
        incident_id = self.first_incident_id()
        self.wait_step_running(incident_id, "remediate")
        self.kill_daemon()
        journal = self.incident(incident_id)  # read straight from the store the dead daemon left
        self.assertEqual(journal["state"], "running", journal)
        self.assertEqual(read_or_none(self.app), GARBAGE, "killed before the remediation acted")

        inc = self.restart_and_finish(incident_id, journal)
        self.assertEqual(inc["state"], "resolved", inc)
        step = self.assert_step(inc, "remediate", "interrupted", attempt=1)
        self.assertIn("guardiand", step["message"])
        # Remediation had started, so attempt 1 was rolled back before attempt 2 healed it.
        self.assert_step(inc, "rollback", "ok", attempt=1)
        self.assert_step(inc, "remediate", "ok", attempt=2)
        self.assert_step(inc, "verify", "ok", attempt=2)
        self.assertEqual(inc["attempts"], 2)
        self.assertIn("incident %d (app): resuming" % incident_id, self.daemons[1].log())

    def test_an_attempt_cut_short_by_a_crash_is_not_the_playbooks_last(self):
        # retries 0: one attempt. The crash took it, not the playbook: the restarted daemon gets
        # one more and heals, instead of escalating for a failure that never happened.
        self.start_with("slow_restore", retries=0)
        write_atomic(self.app, GARBAGE)
        incident_id = self.first_incident_id()
        self.wait_step_running(incident_id, "remediate")
        self.kill_daemon()
        inc = self.restart_and_finish(incident_id, self.incident(incident_id))
        self.assertEqual(inc["state"], "resolved", inc)
        self.assertEqual(inc["attempts"], 2)
        self.assert_step(inc, "remediate", "ok", attempt=2)
        # Killed again in attempt 2's remediate: one more after this restart, and still only one
        # per restart, so a playbook that always crashes the daemon ends escalated.
        self.start_daemon()  # restart_and_finish stopped it
        write_atomic(self.app, GARBAGE)
        second = self.wait_for(lambda: [i["id"] for i in self.incidents("app")
                                        if i["id"] > incident_id][-1:], what="a second incident")[0]
        self.wait_step_running(second, "remediate")
        self.kill_daemon()
        self.start_daemon()
        self.wait_step_running(second, "remediate")
        self.kill_daemon()
        self.start_daemon()
        self.wait_for(lambda: self.incident(second)["state"] in TERMINAL_STATES, LONG_TIMEOUT_S,
                      "incident %d to finish" % second)
        inc = self.incident(second)
        self.assertEqual(inc["state"], "escalated", inc)
        self.assertEqual(inc["attempts"], 2)
        self.assertIn("gave up after 2 attempt(s)", inc["reason"])
        self.assert_no_running_steps(inc)

    def test_an_attempt_cut_short_between_two_steps_is_not_the_playbooks_last(self):
        # The crash falls after the attempt began and before its first step: no step runs, but
        # the attempt was still the crash's, not the playbook's (chaos/run's guardiand-killed
        # scenario found this).
        self.app, _ = self.make_app_file("app")
        self.write_config([self.check("app", self.app, playbook="slow_restore", retries=0)],
                          test_playbooks=True)
        self.start_daemon(env={"GUARDIAN_CRASH_AT": "attempt:journaled"})
        self.wait_version("app", GOOD_CONFIG)
        write_atomic(self.app, GARBAGE)
        self.wait_for(lambda: not self.daemon.alive(), what="guardiand to kill itself")
        self.daemon.proc.wait(timeout=10)
        self.daemon = None
        incident_id = self.first_incident_id()
        journal = self.incident(incident_id)
        self.assertEqual((journal["attempts"], journal["steps"]), (1, []), journal)
        inc = self.restart_and_finish(incident_id, journal)
        self.assertEqual(inc["state"], "resolved", inc)
        self.assertEqual(inc["attempts"], 2)
        self.assert_step(inc, "remediate", "ok", attempt=2)

    def test_kill_during_backup_before_remediation(self):
        self.start_with("slow_backup")
        write_atomic(self.app, GARBAGE)
        incident_id = self.first_incident_id()
        self.wait_step_running(incident_id, "backup")
        self.kill_daemon()
        journal = self.incident(incident_id)
        self.assertFalse([s for s in journal["steps"] if s["phase"] == "remediate"], journal)

        inc = self.restart_and_finish(incident_id, journal)
        self.assertEqual(inc["state"], "resolved", inc)
        self.assert_step(inc, "backup", "interrupted", attempt=1)
        # Remediation never started: nothing to roll back.
        self.assertFalse([s for s in inc["steps"] if s["phase"] == "rollback"], inc)
        self.assert_step(inc, "remediate", "ok", attempt=2)

    def test_kill_right_after_the_incident_opens(self):
        self.start_with("slow_restore")
        write_atomic(self.app, GARBAGE)
        # Poll without sleeping and kill the moment the incident row exists: it is then `open` or
        # in its first steps (backup takes a few ms, so usually remediate's pause has begun).
        # Wherever it lands, recovery must finish it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            listed = self.run_cli("incidents", "--json")
            if listed.returncode == 0 and listed.stdout.strip() not in ("", "[]"):
                break
        self.kill_daemon()
        incident_id = self.first_incident_id_dead()
        journal = self.incident(incident_id)
        self.assertNotIn(journal["state"], TERMINAL_STATES, "killed too late to test this phase")

        inc = self.restart_and_finish(incident_id, journal)
        self.assertEqual(inc["state"], "resolved", inc)

    def first_incident_id_dead(self):
        listed = self.incidents("app")
        self.assertTrue(listed, "the incident was journaled before the kill")
        return listed[-1]["id"]

    def test_kill_at_many_points_of_a_fast_heal(self):
        # The shipped playbook heals in a few ms, so killing 0..150 ms after the fault lands at
        # every point: before detection, with the incident just `open`, mid-step, after it
        # resolved. Whatever the point, the restarted daemon must leave everything finished.
        self.start_with("missing_config")
        for delay_ms in list(range(0, 100, 6)) + [120, 150]:
            with self.subTest(delay_ms=delay_ms):
                write_atomic(self.app, GARBAGE)
                time.sleep(delay_ms / 1000.0)
                self.kill_daemon()
                before = {i["id"]: i for i in self.incidents("app")}
                self.start_daemon()
                self.wait_content(self.app, GOOD_CONFIG)
                self.wait_for(lambda: all(i["state"] in TERMINAL_STATES for i in self.incidents("app")),
                              LONG_TIMEOUT_S, "every incident to be finished")
                # `incidents --json` carries each incident's steps.
                for inc in self.incidents("app"):
                    self.assert_no_running_steps(inc)
                    if inc["id"] in before:
                        self.assert_interrupted(before[inc["id"]], inc)
        self.stop_daemon()

    def test_two_kills_in_a_row(self):
        # Killed during remediate, then again during the retry's remediate: still finishes.
        self.start_with("slow_restore")
        write_atomic(self.app, GARBAGE)
        incident_id = self.first_incident_id()
        self.wait_step_running(incident_id, "remediate")
        self.kill_daemon()
        self.start_daemon()
        self.wait_for(lambda: any(s["phase"] == "remediate" and s["status"] == "running" and s["attempt"] == 2
                                  for s in self.incident(incident_id)["steps"]),
                      LONG_TIMEOUT_S, "attempt 2's remediate to run")
        self.kill_daemon()
        journal = self.incident(incident_id)
        inc = self.restart_and_finish(incident_id, journal)
        self.assertEqual(inc["state"], "resolved", inc)
        self.assert_step(inc, "remediate", "interrupted", attempt=1)
        self.assert_step(inc, "remediate", "interrupted", attempt=2)
        self.assertEqual(inc["attempts"], 3)

    def test_kill_while_waiting_between_attempts(self):
        # Attempt 1 fails (nothing to restore from) and the incident waits 3 s before attempt 2;
        # guardiand is killed in that wait. A .bak appears meanwhile: after the restart the
        # incident must go on to heal from it, not stay `waiting`.
        self.app, _ = self.make_app_file("app", content=GARBAGE)
        self.write_config([self.check("app", self.app)], test_playbooks=True,
                          retry={"backoff_base_ms": 3000, "backoff_max_ms": 3000})
        self.start_daemon()
        incident_id = self.first_incident_id()
        self.wait_for(lambda: self.incident(incident_id)["state"] == "waiting", what="the incident to wait")
        self.kill_daemon()
        journal = self.incident(incident_id)
        self.assertEqual(journal["state"], "waiting", journal)
        self.assert_step(journal, "remediate", "failed", attempt=1)
        bak = "server:\n  port: 7\n"
        with open(self.app + ".bak", "w") as f:
            f.write(bak)

        self.start_daemon()
        self.wait_for(lambda: self.incident(incident_id)["state"] in TERMINAL_STATES, LONG_TIMEOUT_S,
                      "incident %d to finish after the restart" % incident_id)
        inc = self.incident(incident_id)
        self.assertEqual(inc["state"], "resolved", inc)
        self.assert_no_running_steps(inc)
        self.assert_step(inc, "remediate", "ok", attempt=2)
        self.assertEqual(read_or_none(self.app), bak)
        self.stop_daemon()

    def test_restart_without_the_check_escalates_and_closes_the_steps(self):
        # The incident's check is gone from the config at restart: it cannot be healed, so it is
        # escalated with a reason; the step the kill cut short must still not stay `running`.
        # (Engine::Recover closes the interrupted steps before it escalates.)
        self.start_with("slow_restore")
        write_atomic(self.app, GARBAGE)
        incident_id = self.first_incident_id()
        self.wait_step_running(incident_id, "remediate")
        self.kill_daemon()
        other, _ = self.make_app_file("other")
        self.write_config([self.check("other", other)], test_playbooks=True)
        self.start_daemon()
        self.wait_for(lambda: self.incident(incident_id)["state"] in TERMINAL_STATES, LONG_TIMEOUT_S,
                      "incident %d to be finished" % incident_id)
        inc = self.incident(incident_id)
        self.assertEqual(inc["state"], "escalated", inc)
        self.assertIn("no longer configured", inc["reason"])
        self.assert_no_running_steps(inc)
        self.assert_step(inc, "remediate", "interrupted", attempt=1)
        self.stop_daemon()

    def test_sigterm_during_remediate_then_restart(self):
        # A clean stop mid-playbook: exit 0, the step journaled interrupted, resumed at next start.
        self.start_with("slow_restore")
        write_atomic(self.app, GARBAGE)
        incident_id = self.first_incident_id()
        self.wait_step_running(incident_id, "remediate")
        self.stop_daemon()
        journal = self.incident(incident_id)
        self.assertNotIn(journal["state"], TERMINAL_STATES, journal)
        self.assert_no_running_steps(journal)
        self.assert_step(journal, "remediate", "interrupted", attempt=1)
        inc = self.restart_and_finish(incident_id, journal)
        self.assertEqual(inc["state"], "resolved", inc)


if __name__ == "__main__":
    unittest.main()
