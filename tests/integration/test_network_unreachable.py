"""network_unreachable on the real demo stack and a real private network (root only): the
targets live in a network namespace behind a veth pair, with a dnsmasq DNS server there. Taking
the link down or dropping every packet in the namespace cuts the stack off for real: Guardian
puts the app in offline mode within the target, probes on its backoff schedule, and takes the
app out of offline mode by itself when the network is back. One target down is not the network."""

import json
import os
import unittest
import urllib.error

import sys

from harness import LONG_TIMEOUT_S, SOURCE, TIMEOUT_S
from stack import StackTestCase, free_port

sys.path.insert(0, os.path.join(SOURCE, "chaos", "stack"))
from netlab import NetLab, can_run  # noqa: E402  (chaos/stack/netlab.py)

WHY_NOT = can_run()


@unittest.skipIf(WHY_NOT, WHY_NOT)
class NetworkUnreachableTest(StackTestCase):
    def setUp(self):
        super().setUp()
        self.lab = NetLab(self.tmp)
        self.addCleanup(self.lab.close)
        self.p1, self.p2 = free_port(), free_port()
        self.server1 = self.lab.listen(self.p1)
        self.lab.listen(self.p2)
        check = {"id": "app-net", "mode": "network_unreachable", "interval_ms": 200,
                 "params": {"service": "app", "timeout_ms": 500,
                            "targets": ["%s:%d" % (self.lab.name, self.p1),
                                        "%s:%d" % (self.lab.ip, self.p2)],
                            "dns_servers": [self.lab.dns],
                            "offline_probe_ms": ["1000", "2000"]}}
        self.start_stack([check])
        self.wait_for(lambda: self.check("app-net")["state"] == "ok", TIMEOUT_S, "app-net ok")
        self.assertIn("network up", self.check("app-net")["evidence"])

    def check(self, check_id):
        st = self.api("GET", "/v1/status", expect=200).json
        return [c for c in st["checks"] if c["id"] == check_id][0]

    def flags(self):
        path = os.path.join(self.stack, "run", "flags.json")
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def quote_error(self):
        try:
            self.app_get("/quote?item=1")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())["error"]
        return None

    def cut_and_restore(self, cut, restore, evidence):
        cut()
        down = self.wait_incident("app-net", timeout=LONG_TIMEOUT_S)
        self.assertTrue(down["within_target"], down)
        self.assertIn("network down: all 2 targets cut off", down["evidence"])
        self.assertIn(evidence, down["evidence"])
        self.assertIn("offline mode on", [s for s in down["steps"]
                                          if s["phase"] == "remediate"][-1]["message"])
        self.assertTrue(self.flags()["offline_mode"])
        self.assertEqual(self.quote_error(), (503, "offline mode: quotes paused"))
        # While offline the targets are probed on the backoff schedule, not at every interval.
        self.wait_for(lambda: self.check("app-net")["gauges"].get("offline") == 1, TIMEOUT_S,
                      "offline gauge")
        self.assertIn("offline mode", self.check("app-net")["evidence"])
        restore()
        back = self.wait_incident("app-net", after=down["id"], timeout=LONG_TIMEOUT_S)
        self.assertIn("the network is back: offline mode off",
                      [s for s in back["steps"] if s["phase"] == "remediate"][-1]["message"])
        self.assertFalse(self.flags()["offline_mode"])
        # A probe that was under way while the link came back may still report what it saw then
        # (and a link coming up can flap): wait for the steady state, not the next observation.
        self.wait_for(lambda: self.check("app-net")["state"] == "ok" and
                      "network up" in self.check("app-net")["evidence"] and
                      not self.flags()["offline_mode"], LONG_TIMEOUT_S, "app-net up and online")

    def test_link_down_enters_and_leaves_offline_mode(self):
        self.cut_and_restore(lambda: self.lab.link(False), lambda: self.lab.link(True),
                             "unreachable")

    def test_dropped_traffic_enters_and_leaves_offline_mode(self):
        self.cut_and_restore(lambda: self.lab.drop(True), lambda: self.lab.drop(False),
                             "timeout")

    def test_dropped_route_enters_and_leaves_offline_mode(self):
        self.cut_and_restore(lambda: self.lab.route(False), lambda: self.lab.route(True),
                             "unreachable")

    def test_one_target_down_is_not_the_network(self):
        self.server1.kill()
        self.server1.wait()
        self.wait_for(lambda: "not the network" in self.check("app-net")["evidence"], TIMEOUT_S,
                      "one target down reported")
        self.assertIn("refused (the host answers)", self.check("app-net")["evidence"])
        self.assertEqual(self.check("app-net")["state"], "ok")
        self.assertEqual(self.incidents("app-net"), [])
        self.assertFalse(self.flags().get("offline_mode", False))


if __name__ == "__main__":
    unittest.main()
