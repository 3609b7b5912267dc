"""The `chaos` label's compound scenarios (chaos/harness/scenarios.py): chaos/run --start makes
several faults at once, or breaks guardiand itself, and checks what Guardian does about them as
a whole. The network scenarios and disk-and-db need root (a network namespace, a tmpfs);
without it they are skipped with their reason, and nothing else may be."""

import os
import unittest

from chaos_run import run_chaos

SCENARIOS = ["network-outage", "model-and-network", "disk-and-db", "port-during-slow-boot",
             "guardiand-killed", "fault-storm"]
ROOT_ONLY = {"network-outage", "model-and-network", "disk-and-db"}


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
        self.assertLessEqual({"app-boot", "app-port"}, set(by["port-during-slow-boot"]["checks"]),
                             report)
        if os.geteuid() == 0:
            self.assertEqual(by["network-outage"]["playbooks_ran"], ["app-net"], report)
            self.assertIn("remediate", by["model-and-network"]["phases"], report)
            self.assertEqual(by["disk-and-db"]["phases"][0], "observe", report)


if __name__ == "__main__":
    unittest.main()
