"""port_conflict on the real demo stack: the app's port taken by a foreign program (the app is
moved within its range, the foreign program left alone, and moved back once the port is free)
or by a stale orphaned instance of the app itself (stopped, the app restarted on its port)."""

import unittest

from harness import LONG_TIMEOUT_S, TIMEOUT_S
from stack import StackTestCase, pid_alive

CHECK = {"id": "app-port", "mode": "port_conflict", "interval_ms": 250,
         "params": {"service": "app", "return_after_ms": 1000}}


class PortConflictTest(StackTestCase):
    def test_a_foreign_holder_is_left_alone_and_the_app_moves_then_returns(self):
        self.start_stack([CHECK])
        before = self.app_get("/items")
        self.assertGreater(before["count"], 0)

        fault = self.inject("port_conflict", "--kind", "foreign")
        self.assertEqual(fault["port"], self.port)
        inc = self.wait_incident("app-port", timeout=LONG_TIMEOUT_S)
        self.assertTrue(inc["within_target"], inc)
        self.assertLessEqual(inc["mttr_ms"], inc["target_ms"])
        remediate = [s for s in inc["steps"] if s["phase"] == "remediate"][-1]
        self.assertIn("moved app to port %d" % (self.port + 1), remediate["message"])
        self.assertIn("pid %d" % fault["holder_pid"], remediate["message"])

        svc = self.service()
        self.assertEqual(svc["port"], self.port + 1)
        self.assertIn("held by pid %d" % fault["holder_pid"], svc["port_moved_reason"])
        self.assertTrue(pid_alive(fault["holder_pid"]), "the foreign process must not be touched")
        # Served again, data intact, from the new port.
        self.assertEqual(self.app_get("/items", port=self.port + 1), before)

        # The foreign program leaves: after return_after_ms the app goes home.
        first = inc["id"]
        self.inject("port_conflict", "--undo")
        back = self.wait_incident("app-port", after=first, timeout=LONG_TIMEOUT_S)
        self.assertIn("back to its preferred port %d" % self.port,
                      [s for s in back["steps"] if s["phase"] == "remediate"][-1]["message"])
        self.assertEqual(self.service()["port"], self.port)
        self.assertEqual(self.app_get("/items", port=self.port), before)

    def test_a_stale_instance_of_the_app_is_stopped_and_the_app_keeps_its_port(self):
        self.start_stack([CHECK])
        before = self.app_get("/items")
        fault = self.inject("port_conflict", "--kind", "stale")
        inc = self.wait_incident("app-port", timeout=LONG_TIMEOUT_S)
        self.assertTrue(inc["within_target"], inc)
        remediate = [s for s in inc["steps"] if s["phase"] == "remediate"][-1]
        self.assertIn("stopped a stale instance of our own program", remediate["message"])
        self.wait_for(lambda: not pid_alive(fault["holder_pid"]), TIMEOUT_S, "stale instance gone")
        svc = self.service()
        self.assertEqual(svc["port"], self.port)
        self.assertNotIn("port_moved_reason", svc)
        self.assertEqual(self.app_get("/items", port=self.port), before)


if __name__ == "__main__":
    unittest.main()
