"""One playbook attempt at a time per service: two checks that act on the same service (their
params.service) and fail at once take turns. The second incident waits (state waiting, a `wait`
step naming the first), then re-probes and runs its own playbook; the two attempts never
overlap. Checks of different services still act at once."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import LONG_TIMEOUT_S, TIMEOUT_S, GuardianTestCase  # noqa: E402


def phases(inc):
    return [s["phase"] for s in inc["steps"]]


def attempt_span(inc):
    """From the first backup to the last verify or rollback of an incident's attempts."""
    acting = [s for s in inc["steps"] if s["phase"] in ("backup", "remediate", "verify",
                                                         "rollback")]
    return acting[0]["started_at"], acting[-1]["ended_at"]


class ServiceTurnsTest(GuardianTestCase):
    def start(self, services_of):
        """Checks a and b (remediate waits 3 s: slow_restore) on the services named."""
        self.files = {}
        checks = []
        for check_id, service in services_of.items():
            self.files[check_id], _ = self.make_app_file(check_id)
            checks.append(self.check(check_id, self.files[check_id], playbook="slow_restore",
                                     service=service))
        services = [{"name": name, "argv": ["/bin/sleep", "3600"]}
                    for name in sorted(set(services_of.values()))]
        self.write_config(checks, services=services, test_playbooks=True)
        self.start_daemon()
        for c in services_of:
            self.wait_for(lambda: (self.check_status(c) or {}).get("state") == "ok", TIMEOUT_S,
                          c + " ok")

    def break_both(self):
        for path in self.files.values():
            os.remove(path)
        return {c: self.wait_incident(c, timeout=LONG_TIMEOUT_S) for c in self.files}

    def test_two_playbooks_on_one_service_take_turns(self):
        self.start({"a": "svc", "b": "svc"})
        incs = self.break_both()
        for c, inc in incs.items():
            self.assertEqual(inc["state"], "resolved", inc)
        first, second = sorted(incs.values(), key=lambda i: attempt_span(i)[0])
        # The second waited for the first's attempt, and says so.
        self.assertIn("wait", phases(second), second)
        wait = next(s for s in second["steps"] if s["phase"] == "wait")
        self.assertIn("incident %d" % first["id"], wait["message"])
        self.assertIn("service svc", wait["message"])
        self.assertNotIn("wait", phases(first), first)
        # Never at once: the second's attempt starts after the first's ended.
        self.assertGreaterEqual(attempt_span(second)[0], attempt_span(first)[1],
                                (first["steps"], second["steps"]))
        # Its own failure was still its own: it re-probed and ran its own playbook.
        self.assertIn("remediate", phases(second))
        self.assertIn("waiting for incident %d" % first["id"], self.daemon.log())
        self.stop_daemon()

    def test_playbooks_on_different_services_act_at_once(self):
        self.start({"a": "one", "b": "two"})
        incs = self.break_both()
        for c, inc in incs.items():
            self.assertEqual(inc["state"], "resolved", inc)
            self.assertNotIn("wait", phases(inc), inc)
        a, b = attempt_span(incs["a"]), attempt_span(incs["b"])
        # Each remediate waits 3 s: had they taken turns, one would start after the other ended.
        self.assertLess(max(a[0], b[0]), min(a[1], b[1]), (a, b))
        self.stop_daemon()


if __name__ == "__main__":
    import unittest
    unittest.main()
