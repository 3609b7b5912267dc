"""slow_boot on the real demo stack: a boot chunk made slow and the app restarted. Guardian
sees the chunk pass its deadline (per-chunk timings in the incident), restarts the app with
that non-critical chunk skipped (degraded for one boot), and never kills it for slowness
itself; a slow critical chunk is not skipped and ends escalated."""

import json
import os
import unittest

from harness import LONG_TIMEOUT_S
from stack import StackTestCase

CHECK = {"id": "app-boot", "mode": "slow_boot", "interval_ms": 500,
         "params": {"service": "app", "deadline_ms": 3000, "chunk_deadline_ms": 800}}


class SlowBootTest(StackTestCase):
    def test_a_slow_non_critical_chunk_is_skipped_for_one_boot(self):
        self.start_stack([CHECK])
        before = self.app_get("/items")
        fault = self.inject("slow_boot", "--kind", "search_index", "--delay-ms", "20000")
        inc = self.wait_incident("app-boot", timeout=LONG_TIMEOUT_S)
        self.assertTrue(inc["within_target"], inc)
        self.assertIn("chunk search_index has run", inc["evidence"])
        self.assertIn("database", inc["evidence"])  # the timings of the chunks before it
        remediate = [s for s in inc["steps"] if s["phase"] == "remediate"][-1]
        self.assertIn("restarted with [search_index] skipped", remediate["message"])

        st = self.app_get("/status")
        self.assertTrue(st["degraded"])
        chunks = {c["name"]: c for c in st["boot"]["chunks"]}
        self.assertTrue(chunks["search_index"]["skipped"])
        self.assertFalse(chunks["database"]["skipped"])
        self.assertEqual(self.app_get("/items"), before)
        # One boot only: the flag is back to empty for the next one.
        with open(os.path.join(self.stack, "run", "flags.json")) as f:
            self.assertEqual(json.load(f)["skip_chunks"], [])
        # Guardian did not kill the slow process on its own: one exit (the injector's TERM),
        # the rest are the playbook's restart.
        self.assertNotEqual(self.service()["pid"], fault["restarted_app_pid"])

    def test_a_slow_critical_chunk_is_not_skipped_and_escalates(self):
        self.start_stack([dict(CHECK, retries=0)])
        self.inject("slow_boot", "--kind", "database", "--delay-ms", "4000")
        inc = self.wait_incident("app-boot", state="escalated", timeout=LONG_TIMEOUT_S)
        self.assertIn("chunk database has run", inc["evidence"])
        remediate = [s for s in inc["steps"] if s["phase"] == "remediate"][-1]
        self.assertEqual(remediate["status"], "failed")
        self.assertIn("critical chunk database", remediate["message"])
        self.assertIn("cannot be skipped", remediate["message"])
        # The app was left to finish its boot, not killed for being slow.
        self.wait_for(lambda: self.service().get("state") == "ready", LONG_TIMEOUT_S,
                      "the app to finish its slow boot")


if __name__ == "__main__":
    unittest.main()
