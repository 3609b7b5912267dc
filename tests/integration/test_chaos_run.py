"""chaos/run against a running guardiand and demo stack (its attached mode): it passes a fault
Guardian heals, fails one it does not (and says why), refuses to start from a stack that is not
in its steady state, and undoes its fault when interrupted. Its full run over every mode, on a
stack it starts itself, is the `chaos` label's test (tests/chaos)."""

import json
import os
import signal
import subprocess
import sys
import time
import unittest

from harness import LONG_TIMEOUT_S, SOURCE, TIMEOUT_S
from stack import StackTestCase

CHAOS_RUN = os.path.join(SOURCE, "chaos", "run")


class ChaosRunTest(StackTestCase):
    def start(self, playbook=None):
        self.app_yaml = os.path.join(self.stack, "app", "app.yaml")
        check = {"id": "app-config", "mode": "missing_config", "interval_ms": 200,
                 "params": {"path": self.app_yaml, "service": "app",
                            "required_keys": ["server.port:int", "database.path:string"]}}
        if playbook:
            check["playbook"] = playbook
        self.start_stack([check], test_playbooks=bool(playbook))
        with open(self.app_yaml, "rb") as f:
            self.good = f.read()
        # The first version of the file is kept before any fault (Guardian's last-known-good).
        self.wait_for(lambda: self.status_check("app-config").get("state") == "ok", TIMEOUT_S,
                      "app-config ok")

    def status_check(self, check_id):
        st = self.api("GET", "/v1/status", expect=200).json
        return next((c for c in st["checks"] if c["id"] == check_id), {})

    def chaos(self, *args, timeout=LONG_TIMEOUT_S * 2):
        out = self.path("chaos.json")
        r = subprocess.run([sys.executable, CHAOS_RUN, "--state-dir", self.tmp, "--socket",
                            os.path.join(self.state_dir, "guardian.sock"), "--json", out,
                            "--seed", "7", *args], capture_output=True, text=True,
                           timeout=timeout)
        doc = None
        if os.path.exists(out):
            with open(out) as f:
                doc = json.load(f)
        return r, doc

    def test_a_healed_fault_passes_with_its_figures(self):
        self.start()
        r, doc = self.chaos("missing_config", "--repeat", "2")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(doc["format"], "guardian-chaos-run/1")
        self.assertTrue(doc["ok"])
        self.assertEqual(doc["seed"], 7)
        runs = doc["experiments"]
        self.assertEqual([(e["mode"], e["kind"]) for e in runs],
                         [("missing_config", "delete"), ("missing_config", "wrong-type")])
        incidents = {i["id"]: i for i in self.incidents("app-config")}
        for e in runs:
            inc = incidents[e["incident"]]
            self.assertEqual((e["check"], e["state"], e["healed"], e["verified"]),
                             ("app-config", "resolved", True, True))
            # The figures are Guardian's timestamps counted from the injector's onset.
            self.assertEqual(e["mttr_ms"], inc["recovered_at"] - e["onset_at"])
            self.assertEqual(e["mttd_ms"], inc["detected_at"] - e["onset_at"])
            self.assertLessEqual(e["mttr_ms"], e["target_ms"])
            self.assertLess(e["offset_ms"], e["interval_ms"])
        m = doc["modes"]["missing_config"]
        self.assertEqual((m["count"], m["ok"], m["failed"]), (2, 2, 0))
        self.assertEqual(m["mttr_ms"]["max"], max(e["mttr_ms"] for e in runs))
        self.assertIn("ok: 2 experiments, 0 failed", r.stdout)
        with open(self.app_yaml, "rb") as f:
            self.assertEqual(f.read(), self.good)
        # The run is kept in guardiand for the report's trend, with its figures.
        stored = self.api("GET", "/v1/chaos-runs", expect=200).json["runs"]
        self.assertEqual(len(stored), 1, stored)
        self.assertEqual((stored[0]["ok"], stored[0]["seed"], stored[0]["experiments"]),
                         (True, 7, 2))
        self.assertEqual(stored[0]["modes"]["missing_config"]["mttr_ms"], m["mttr_ms"])
        self.assertEqual(stored[0]["started_at"], doc["started_at"])

    def test_html_writes_the_report_with_the_run_in_its_trend(self):
        self.start()
        page = self.path("report.html")
        r, doc = self.chaos("missing_config", "--html", page,
                            "--bin-dir", os.environ["GUARDIAN_BIN"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(page, encoding="utf-8") as f:
            html = f.read()
        self.assertIn('class="chart trend"', html)
        self.assertIn("#%d app-config (missing_config)" % doc["experiments"][0]["incident"],
                      html)
        self.assertIn("1 chaos runs", r.stderr)

    def test_a_fault_guardian_does_not_heal_fails_the_run_and_is_undone(self):
        self.start(playbook="never_heals")
        r, doc = self.chaos("missing_config")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertFalse(doc["ok"])
        e = doc["experiments"][0]
        self.assertEqual((e["ok"], e["state"], e["healed"]), (False, "escalated", False))
        self.assertTrue(any("ended escalated" in f for f in e["failures"]), e["failures"])
        self.assertIn("FAILED", r.stdout)
        self.assertIn("this playbook never heals", r.stdout)
        # chaos/run's undo put the user's file back, though Guardian could not.
        with open(self.app_yaml, "rb") as f:
            self.assertEqual(f.read(), self.good)

    def test_no_fault_is_made_unless_the_steady_state_holds(self):
        self.start()
        self.api("POST", "/v1/checks/app-config/hold", {"reason": "maintenance"}, expect=200)
        r, doc = self.chaos("missing_config", "--settle", "2", timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("not in its steady state", r.stderr)
        self.assertIn("check app-config is held: maintenance", r.stderr)
        self.assertIsNone(doc)
        self.assertEqual(self.incidents("app-config"), [])
        with open(self.app_yaml, "rb") as f:
            self.assertEqual(f.read(), self.good)

    def test_interrupted_mid_fault_it_undoes_the_fault(self):
        self.start(playbook="slow_restore")  # remediate waits 3 s: the file stays deleted
        proc = subprocess.Popen([sys.executable, CHAOS_RUN, "--state-dir", self.tmp, "--socket",
                                 os.path.join(self.state_dir, "guardian.sock"), "missing_config"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.wait_for(lambda: any(i["state"] in ("running", "open")
                                  for i in self.incidents("app-config")),
                      LONG_TIMEOUT_S, "the fault's incident under way")
        self.assertFalse(os.path.exists(self.app_yaml), "the fault is in place")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=LONG_TIMEOUT_S)
        self.assertEqual(proc.returncode, 130, out + err)
        self.assertIn("interrupted; the fault in hand was undone", err)
        with open(self.app_yaml, "rb") as f:
            self.assertEqual(f.read(), self.good)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "inject-saved-app.yaml")))


if __name__ == "__main__":
    unittest.main()
