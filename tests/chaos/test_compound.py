"""The `chaos` label's compound scenarios (chaos/harness/scenarios.py): chaos/run --start makes
several faults at once, or breaks guardiand itself, and checks what Guardian does about them as
a whole. The two network scenarios (network-outage, model-and-network) are not in this test yet:
under ASan one run left app-net in offline mode after a drop (under investigation); run them
with chaos/run --start network-outage model-and-network (root)."""

import os
import unittest

from chaos_run import run_chaos

SCENARIOS = ["guardiand-killed", "fault-storm"]
ROOT_ONLY = set()


class CompoundScenariosTest(unittest.TestCase):
    def test_every_scenario_once(self):
        code, doc, report = run_chaos(*SCENARIOS)
        self.assertEqual(code, 0, report)
        self.assertTrue(doc["ok"], report)
        self.assertEqual([e["scenario"] for e in doc["experiments"]], SCENARIOS, report)
        by = {e["scenario"]: e for e in doc["experiments"]}
        for name, e in by.items():
            with self.subTest(scenario=name):
                if e["skipped"]:
                    self.assertNotEqual(os.geteuid(), 0, "nothing is skipped as root" + report)
                    self.assertIn(name, ROOT_ONLY)
                    self.assertIn("root", e["skip_reason"])
                else:
                    self.assertTrue(e["ok"], report)
        # What each scenario asserted is in its record, too.
        self.assertEqual(by["fault-storm"]["states"], ["resolved"] * 3 + ["escalated"])
        self.assertIn("budget", by["fault-storm"]["hold_reason"])
        self.assertEqual(by["guardiand-killed"]["state"], "resolved")


if __name__ == "__main__":
    unittest.main()
