"""The fleet's remediation budget with three guardiands (separate state dirs) on one real
3-member etcd cluster: a disruptive playbook takes a slot of its mode before it acts, so with
max_concurrent 1 three hosts failing at once act one after another, never overlapping (checked
from each host's audit trail and steps), and the wait is a step counted in MTTR. Cut off from
etcd (quorum lost), disruptive playbooks are held observe-only with the reason; once the quorum
is back each acts exactly once. One host partitioned from etcd alone (a black-holing proxy on its
road) holds its disruptive playbook while the others act, and acts once it is back."""

import os
import re
import time
import unittest

from fleet_hosts import FleetHostsTestCase
from tcp_proxy import TcpProxy
from harness import GOOD_CONFIG, REPO_PLAYBOOKS, read_or_none

BROKEN = "server: [unclosed\n"

# A disruptive playbook whose verify always fails: each attempt ends in a retry.
NEVER_VERIFIES = """
local P = { name = "fleet_never_verifies", mode = "missing_config", timeout = 5000,
            retries = 3, disruptive = true }
function P.remediate(ctx) return "did nothing" end
function P.verify(ctx) error("not healed") end
return P
"""


class FleetBudgetTest(FleetHostsTestCase):
    def resolved(self, h):
        def done():
            incs = self.host_incidents(h)
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

    def test_one_member_down_changes_nothing(self):
        self.start_hosts()
        # Every host lists m0 first, so each of them finds it gone and moves to the next one.
        self.etcd.kill("m0")
        self.break_all()
        incs = {h: self.resolved(h) for h in self.hosts}
        for h, inc in incs.items():
            self.assertEqual(read_or_none(h.app), GOOD_CONFIG)
            self.assertEqual(inc["attempts"], 1, inc)
            self.assertEqual(len(self.steps(inc, "remediate")), 1, inc)
            self.assertEqual(self.steps(inc, "observe"), [], inc)
            self.assertEqual(h.events("fleet_cut_off"), [], h.name)
            self.assertEqual(self.fleet_state(h), "connected")
        self.assert_one_after_another(incs)

    def test_quorum_loss_holds_disruptive_playbooks_and_nothing_acts_twice(self):
        self.start_hosts()
        self.etcd.kill("m0")
        self.etcd.kill("m1")
        for h in self.hosts:
            self.wait_fleet(h, "cut_off")
        self.break_all()
        for h in self.hosts:
            def observed(h=h):
                incs = self.host_incidents(h)
                if not incs:
                    return None
                inc = self.cli("incident", str(incs[0]["id"]), state_dir=h.state_dir)
                return self.steps(inc, "observe") and inc
            inc = self.wait_for(observed, 30, "%s to observe" % h.name, daemon=h.daemon)
            self.assertIn("cut off from fleet shop", self.steps(inc, "observe")[0]["message"])
        time.sleep(2)  # held, not merely slow: nothing acts while cut off
        for h in self.hosts:
            inc = self.host_incidents(h)[0]
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

    def test_a_retry_whose_playbook_was_removed_is_still_held_while_cut_off(self):
        # The incident's run keeps the playbook's code after its file is gone, so a retry
        # would act with it: it must still count as disruptive and be held while cut off.
        pb_dir = self.path("playbooks")
        os.makedirs(pb_dir)
        pb = os.path.join(pb_dir, "fleet_never_verifies.lua")
        with open(pb, "w", encoding="utf-8") as f:
            f.write(NEVER_VERIFIES)
        self.start_hosts(n=1, playbook="fleet_never_verifies",
                         playbook_dirs=[REPO_PLAYBOOKS, pb_dir],
                         retry={"backoff_base_ms": 8000, "backoff_max_ms": 8000})
        h = self.hosts[0]
        self.break_all()

        def first_attempt_failed():
            incs = self.host_incidents(h)
            if not incs:
                return None
            inc = self.cli("incident", str(incs[0]["id"]), state_dir=h.state_dir)
            return [s for s in inc["steps"] if s["phase"] == "verify" and s["status"] == "failed"]
        failed = self.wait_for(first_attempt_failed, 30, "the first attempt to fail",
                               daemon=h.daemon)
        self.etcd.kill("m0")
        self.etcd.kill("m1")
        self.wait_fleet(h, "cut_off")
        n = int(re.search(r"started: \d+ checks?, (\d+) playbooks", h.daemon.log()).group(1))
        os.remove(pb)
        # The playbook folders' watcher drops it from the library (a rescan 100 ms later). A
        # reload here would be refused once it has: the check names a playbook that is gone.
        self.wait_for(lambda: "playbook folders rescanned: %d playbooks" % (n - 1)
                      in h.daemon.log(), 10, "the removed playbook dropped", daemon=h.daemon)
        # Past the retry's time (8 s after the first attempt), with a margin.
        time.sleep(max(0.0, failed[0]["ended_at"] / 1000.0 + 10 - time.time()))
        inc = self.cli("incident", str(self.host_incidents(h)[0]["id"]), state_dir=h.state_dir)
        self.assertEqual(len(self.steps(inc, "remediate")), 1, inc)
        self.assertIn("cut off from fleet shop", self.steps(inc, "observe")[-1]["message"])

    def test_a_partitioned_host_holds_while_the_others_act_and_acts_once_back(self):
        proxies = [TcpProxy(port) for port in self.etcd.client.values()]
        for p in proxies:
            self.addCleanup(p.close)
        self.start_hosts(endpoints={"web-1": [p.url for p in proxies]})
        cut, others = self.hosts[0], self.hosts[1:]
        for p in proxies:
            p.partition()
        self.wait_fleet(cut, "cut_off")
        self.break_all()
        # The two that still reach etcd act, one after the other; the cut-off one only observes.
        for h in others:
            self.resolved(h)
        inc = self.cli("incident", str(self.host_incidents(cut)[0]["id"]), state_dir=cut.state_dir)
        self.assertEqual(inc["state"], "open", inc)
        self.assertIn("cut off from fleet shop", self.steps(inc, "observe")[0]["message"])
        self.assertEqual(self.steps(inc, "remediate"), [])
        self.assertEqual(read_or_none(cut.app), BROKEN)
        for p in proxies:
            p.heal()
        self.wait_fleet(cut, "connected", timeout=60)
        incs = {h: self.resolved(h) for h in self.hosts}
        self.assertEqual(len(self.steps(incs[cut], "remediate")), 1, incs[cut])
        windows = self.assert_one_after_another(incs)
        self.assertEqual(windows[-1][2], cut.name, windows)  # it acted last, after rejoining


if __name__ == "__main__":
    unittest.main()
