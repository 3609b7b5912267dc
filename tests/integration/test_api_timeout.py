"""api_timeout on the real demo stack: the app calls a primary and a backup upstream API
(chaos/stack/upstream api, both supervised by guardiand beside it). The primary hangs, slows
down or fails for real; Guardian opens the circuit (routes the app to the backup through its
flags, lowers its upstream timeout), keeps probing the primary (half-open), and closes the
circuit again once the primary answers well, each as an incident within the mode's target."""

import json
import os
import sys
import unittest

from harness import LONG_TIMEOUT_S, SOURCE, TIMEOUT_S
from stack import StackTestCase, free_port

UPSTREAM = os.path.join(SOURCE, "chaos", "stack", "upstream")


class ApiTimeoutTest(StackTestCase):
    def upstream_service(self, name, port, start_delay_s=0):
        argv = [sys.executable, UPSTREAM, "api", "--port", str(port), "--name", name]
        if start_delay_s:
            # A server slow to come up: sleeps before it becomes the upstream (argv, no shell).
            argv = [sys.executable, "-c",
                    "import os, sys, time; time.sleep(%g); os.execv(sys.argv[1], sys.argv[1:])"
                    % start_delay_s] + argv
        return {"name": name, "argv": argv, "cwd": self.stack, "port": {"preferred": port}}

    def start(self, primary_delay_s=0):
        self.p1, self.p2 = free_port(), free_port()
        # The seeded app.yaml names the demo's ports (9101, 9102): this test's go there instead.
        path = os.path.join(self.stack, "app", "app.yaml")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        text = text.replace(":9101", ":%d" % self.p1).replace(":9102", ":%d" % self.p2)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        check = {"id": "app-api", "mode": "api_timeout", "interval_ms": 200,
                 "params": {"service": "app", "primary": "http://127.0.0.1:%d" % self.p1,
                            "backup": "http://127.0.0.1:%d" % self.p2,
                            "probe_path": "/v1/quote?item=1", "latency_limit_ms": 500,
                            "failures": 3, "close_after": 2}}
        self.write_config([check], services=[self.app_service(),
                                             self.upstream_service("primary", self.p1,
                                                                   primary_delay_s),
                                             self.upstream_service("backup", self.p2)],
                          port_registry=os.path.join(self.stack, "run", "ports.json"))
        self.start_daemon()
        for name in ("app", "primary", "backup"):
            self.wait_for(lambda: self.service(name).get("state") == "ready", TIMEOUT_S,
                          name + " ready")
        # Steady state: the app may have called before its upstreams were up (then the circuit
        # opened and closed again); wait until it is closed with nothing open.
        def steady():
            st = self.api("GET", "/v1/status", expect=200).json
            check = [c for c in st["checks"] if c["id"] == "app-api"][0]
            routed = not os.path.exists(os.path.join(self.stack, "run", "flags.json")) or \
                self.flags().get("active_upstream", "primary") == "primary"
            return check["state"] == "ok" and st["open_incidents"] == 0 and routed
        self.wait_for(steady, LONG_TIMEOUT_S, "the circuit closed and no incident open")
        self.baseline = max([i["id"] for i in self.incidents("app-api")] or [0])
        self.assertEqual(self.app_get("/quote?item=3")["served_by"], "primary")

    def api_check(self):
        st = self.api("GET", "/v1/status", expect=200).json
        return [c for c in st["checks"] if c["id"] == "app-api"][0]

    def check_gauges(self):
        return self.api_check()["gauges"]

    def flags(self):
        with open(os.path.join(self.stack, "run", "flags.json")) as f:
            return json.load(f)

    def open_and_close(self, kind):
        self.start()
        self.inject("api_timeout", "--kind", kind, "--delay-ms", "1500")
        opened = self.wait_incident("app-api", timeout=LONG_TIMEOUT_S, after=self.baseline)
        self.assertTrue(opened["within_target"], opened)
        remediate = [s for s in opened["steps"] if s["phase"] == "remediate"][-1]["message"]
        self.assertIn("circuit open", remediate)
        self.assertEqual(self.flags()["active_upstream"], "backup")
        self.assertEqual(self.flags()["upstream_timeout_ms"], 10000)
        self.assertEqual(self.app_get("/quote?item=3")["served_by"], "backup")
        # The breaker's state is in status and metrics.
        self.wait_for(lambda: self.check_gauges().get("breaker_open") == 1, TIMEOUT_S,
                      "breaker_open 1 in status")
        metrics = self.api("GET", "/metrics", expect=200).text
        self.assertIn('guardian_check_gauge{check="app-api",mode="api_timeout",'
                      'name="breaker_open"} 1', metrics)
        # Ok only through the open breaker, with the primary still failing: degraded.
        self.assertEqual((self.api_check()["state"], self.api_check()["degraded"]),
                         ("ok", True))
        # The primary recovers: the half-open probes see it, and the circuit closes.
        self.inject("api_timeout", "--undo")
        closed = self.wait_incident("app-api", timeout=LONG_TIMEOUT_S, after=opened["id"])
        remediate = [s for s in closed["steps"] if s["phase"] == "remediate"][-1]["message"]
        self.assertIn("circuit closed", remediate)
        self.assertEqual(self.flags()["active_upstream"], "primary")
        self.assertEqual(self.flags()["upstream_timeout_ms"], 0)
        self.assertEqual(self.app_get("/quote?item=3")["served_by"], "primary")
        self.wait_for(lambda: self.check_gauges().get("breaker_open") == 0, TIMEOUT_S,
                      "breaker_open 0 in status")
        self.assertFalse(self.api_check()["degraded"])
        return opened

    def test_primary_still_starting_is_not_an_incident(self):
        # Refusals from a primary that guardiand itself is still starting are Unknown, not
        # failures: no circuit opens at start-up.
        self.start(primary_delay_s=3)
        self.assertEqual(self.incidents("app-api"), [])
        self.assertEqual(self.check_gauges().get("breaker_open"), 0)

    def test_hanging_primary(self):
        opened = self.open_and_close("hang")
        self.assertIn("timeout", opened["evidence"])

    def test_slow_primary(self):
        opened = self.open_and_close("slow")
        self.assertIn("the limit is 500 ms", opened["evidence"])

    def test_failing_primary(self):
        opened = self.open_and_close("fail")
        self.assertIn("503", opened["evidence"])


if __name__ == "__main__":
    unittest.main()
