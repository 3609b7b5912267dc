"""The fleet's remediation budget with three guardiands (separate state dirs) on one real
3-member etcd cluster: a disruptive playbook takes a slot of its mode before it acts, so with
max_concurrent 1 three hosts failing at once act one after another, never overlapping (checked
from each host's audit trail and steps), and the wait is a step counted in MTTR. Cut off from
etcd (quorum lost), disruptive playbooks are held observe-only with the reason; once the quorum
is back each acts exactly once."""

import json
import os
import sqlite3
import time
import unittest

from etcd_cluster import EtcdCluster
from harness import GOOD_CONFIG, GuardianTestCase, read_or_none, read_text

BROKEN = "server: [unclosed\n"


class Host:
    def __init__(self, test, name):
        self.name = name
        self.state_dir = test.path("state-" + name)
        self.config_path = test.path(name + ".yaml")
        self.app, _ = test.make_app_file(name)
        self.daemon = None

    @property
    def socket(self):
        return os.path.join(self.state_dir, "guardian.sock")

    def events(self, *kinds):
        db = sqlite3.connect(os.path.join(self.state_dir, "guardian.db"))
        try:
            marks = ",".join("?" * len(kinds))
            return db.execute("SELECT at, kind, detail FROM events WHERE kind IN (%s) ORDER BY id"
                              % marks, kinds).fetchall()
        finally:
            db.close()


class FleetBudgetTest(GuardianTestCase):
    def setUp(self):
        super().setUp()
        self.etcd = EtcdCluster(self.path("etcd"))
        self.addCleanup(self.etcd.close)
        self.etcd.start()

    def start_hosts(self, n=3):
        self.hosts = [Host(self, "web-%d" % i) for i in range(1, n + 1)]
        for h in self.hosts:
            fleet = {"name": "shop", "host": h.name, "endpoints": self.etcd.endpoints(),
                     "lease_ttl_s": 6, "reconnect": {"base_ms": 200, "max_ms": 1000},
                     "budgets": {"default": {"max_concurrent": 1, "min_healthy": 0}}}
            checks = [self.check("app", h.app, playbook="fleet_restore")]
            self.write_config(checks, path=h.config_path, test_playbooks=True, fleet=fleet,
                              state_dir=h.state_dir)
            h.daemon = self.start_daemon(h.config_path, wait_ready=False)
        self.daemon = self.hosts[0].daemon  # whose log tail a failed wait shows
        for h in self.hosts:
            self.wait_fleet(h, "connected")
            # The good file kept: the playbook restores it.
            versions = os.path.join(h.state_dir, "checks", "app", "versions")
            self.wait_for(lambda: os.path.isdir(versions) and any(
                read_text(os.path.join(versions, v)) == GOOD_CONFIG for v in os.listdir(versions)),
                what="%s to keep a good version" % h.name, daemon=h.daemon)

    def fleet_state(self, h):
        r = self.api("GET", "/v1/status", socket_path=h.socket)
        return r.status == 200 and r.json.get("fleet", {}).get("state")

    def wait_fleet(self, h, state, timeout=30):
        self.wait_for(lambda: self.fleet_state(h) == state, timeout,
                      "%s fleet state %s" % (h.name, state), daemon=h.daemon)

    def incidents(self, h):
        return self.cli("incidents", "--check", "app", state_dir=h.state_dir)

    def resolved(self, h):
        def done():
            incs = self.incidents(h)
            return incs and incs[0]["state"] == "resolved" and incs[0]
        inc = self.wait_for(done, 60, "%s's incident resolved" % h.name, daemon=h.daemon)
        return self.cli("incident", str(inc["id"]), state_dir=h.state_dir)

    def steps(self, inc, phase):
        return [s for s in inc["steps"] if s["phase"] == phase]

    def slot_windows(self):
        """(granted, released, host) from each host's audit trail."""
        windows = []
        for h in self.hosts:
            ev = h.events("fleet_slot", "fleet_slot_released")
            kinds = [k for _, k, _ in ev]
            self.assertEqual(kinds, ["fleet_slot", "fleet_slot_released"], (h.name, ev))
            windows.append((ev[0][0], ev[1][0], h.name))
        return sorted(windows)

    def assert_one_after_another(self, incs):
        windows = self.slot_windows()
        for a, b in zip(windows, windows[1:]):
            self.assertLessEqual(a[1], b[0], "slots overlap: %s" % windows)
        # The steps that act lie inside their host's window, so they never overlap either.
        acts = sorted((s["started_at"], s["ended_at"], h.name) for h, inc in incs.items()
                      for s in inc["steps"] if s["phase"] in ("backup", "remediate", "verify"))
        spans = {}
        for start, end, name in acts:
            lo, hi = spans.get(name, (start, end))
            spans[name] = (min(lo, start), max(hi, end))
        ordered = sorted((lo, hi, name) for name, (lo, hi) in spans.items())
        for a, b in zip(ordered, ordered[1:]):
            self.assertLess(a[1], b[0], "remediations overlap: %s" % ordered)
        return windows

    def break_all(self):
        for h in self.hosts:
            with open(h.app, "w", encoding="utf-8") as f:
                f.write(BROKEN)

    def test_three_hosts_failing_at_once_act_one_after_another(self):
        self.start_hosts()
        self.break_all()
        incs = {h: self.resolved(h) for h in self.hosts}
        for h, inc in incs.items():
            self.assertEqual(read_or_none(h.app), GOOD_CONFIG)
            self.assertEqual(len(self.steps(inc, "remediate")), 1, inc)
            slot = self.steps(inc, "fleet_slot")
            self.assertEqual([s["status"] for s in slot], ["ok"], inc)
        self.assert_one_after_another(incs)
        # Two of the three waited for a turn, and the wait is in their MTTR.
        waited = [inc for inc in incs.values()
                  if self.steps(inc, "fleet_slot")[0]["message"].startswith("granted after waiting")]
        self.assertEqual(len(waited), 2, [self.steps(i, "fleet_slot") for i in incs.values()])
        for inc in waited:
            slot = self.steps(inc, "fleet_slot")[0]
            self.assertIn("host(s) ahead", slot["message"])
            self.assertGreaterEqual(slot["ended_at"] - slot["started_at"], 1000, slot)
            self.assertGreaterEqual(inc["mttr_ms"], slot["ended_at"] - inc["onset_at"])
        # Every slot key is gone once its incident ended.
        self.assertEqual(self.etcd.get("/guardian/shop/slots/", prefix=True), {})

    def test_quorum_loss_holds_disruptive_playbooks_and_nothing_acts_twice(self):
        self.start_hosts()
        self.etcd.kill("m0")
        self.etcd.kill("m1")
        for h in self.hosts:
            self.wait_fleet(h, "cut_off")
        self.break_all()
        for h in self.hosts:
            def observed(h=h):
                incs = self.incidents(h)
                if not incs:
                    return None
                inc = self.cli("incident", str(incs[0]["id"]), state_dir=h.state_dir)
                return self.steps(inc, "observe") and inc
            inc = self.wait_for(observed, 30, "%s to observe" % h.name, daemon=h.daemon)
            self.assertIn("cut off from fleet shop", self.steps(inc, "observe")[0]["message"])
        time.sleep(2)  # held, not merely slow: nothing acts while cut off
        for h in self.hosts:
            inc = self.incidents(h)[0]
            self.assertEqual(inc["state"], "open", inc)
            self.assertEqual(read_or_none(h.app), BROKEN)
            self.assertEqual(h.events("fleet_slot"), [])
        self.etcd.start("m0")
        self.etcd.start("m1")
        incs = {h: self.resolved(h) for h in self.hosts}
        for h, inc in incs.items():
            self.assertEqual(len(self.steps(inc, "remediate")), 1, inc)
            self.assertEqual(inc["attempts"], 1, inc)
        self.assert_one_after_another(incs)


if __name__ == "__main__":
    unittest.main()
