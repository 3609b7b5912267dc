"""Fleet mode against a real 3-member etcd cluster on loopback (tests/integration/etcd_cluster.py):
a guardiand takes its seat (a host key on its own lease, heartbeats in it), keeps it when one
member dies, is cut off (health degraded, audit trail says why) when the quorum is lost and
rejoins when it returns, and frees its seat at once when it stops."""

import json
import os
import sqlite3
import time
import unittest

from fleet_hosts import FleetHostsTestCase

HOST_KEY = "/guardian/shop/hosts/web-1"


class FleetTest(FleetHostsTestCase):
    def start_member(self, **fleet):
        cfg = dict({"name": "shop", "host": "web-1", "endpoints": self.etcd.endpoints(),
                    "lease_ttl_s": 6, "reconnect": {"base_ms": 200, "max_ms": 1000}}, **fleet)
        app, _ = self.make_app_file()
        self.write_config([self.check("app", app)], fleet=cfg)
        self.start_daemon()

    def fleet(self):
        return self.api("GET", "/v1/status", expect=200).json["fleet"]

    def wait_state(self, state, timeout=30):
        return self.wait_for(lambda: self.fleet()["state"] == state and self.fleet(),
                             timeout=timeout, what="fleet state " + state)

    def audit_kinds(self):
        db = sqlite3.connect(os.path.join(self.state_dir, "guardian.db"))
        try:
            # The seat's rows (the election's, fleet_leader*, are test_fleet_leader's).
            return [k for (k,) in db.execute(
                "SELECT kind FROM events WHERE kind IN ('fleet_connected', 'fleet_cut_off') ORDER BY id")]
        finally:
            db.close()

    def test_a_host_takes_its_seat_heartbeats_and_frees_it_when_it_stops(self):
        self.start_member()
        f = self.wait_state("connected")
        self.assertEqual((f["fleet"], f["host"]), ("shop", "web-1"))
        seat = self.etcd.get(HOST_KEY)[HOST_KEY]
        self.assertEqual(seat["lease"], f["lease"])
        first = json.loads(seat["value"])
        self.assertEqual(first["pid"], self.daemon.pid)
        self.assertEqual(first["open_incidents"], 0)
        self.assertEqual(self.api("GET", "/v1/health", expect=200).json["fleet"], "connected")
        # Heartbeats every third of the 6 s TTL: the seat outlives the TTL and its time moves.
        time.sleep(7)
        later = json.loads(self.etcd.get(HOST_KEY)[HOST_KEY]["value"])
        self.assertGreater(later["heartbeat_at"], first["heartbeat_at"])
        self.assertEqual(self.wait_for(lambda: self.audit_kinds(), what="audit rows"), ["fleet_connected"])
        # Stopping revokes the lease: the seat is free at once, well before its TTL.
        self.stop_daemon()
        self.assertEqual(self.etcd.get(HOST_KEY), {})

    def test_one_member_down_changes_nothing_and_quorum_loss_cuts_off_until_it_returns(self):
        self.start_member()
        before = self.wait_state("connected")
        # One of three down, the one listed first: requests move on to the next.
        self.etcd.kill("m0")
        time.sleep(7)  # more than the TTL: the heartbeats must have gone elsewhere
        f = self.fleet()
        self.assertEqual(f["state"], "connected", f)
        self.assertEqual(f["lease"], before["lease"])
        self.assertEqual(f["reconnects"], 0)
        # Two of three down: no quorum, no keep-alive; cut off, and health says so.
        self.etcd.kill("m1")
        f = self.wait_state("cut_off")
        self.assertNotEqual(f["last_error"], "")
        self.assertEqual(f["lease"], 0)
        h = self.api("GET", "/v1/health", expect=200).json
        self.assertEqual((h["status"], h["fleet"]), ("degraded", "cut_off"))
        # Back: a new lease, the seat taken again, health ok.
        self.etcd.start("m0")
        self.etcd.start("m1")
        f = self.wait_state("connected", timeout=60)
        self.assertNotEqual(f["lease"], before["lease"])
        self.assertGreaterEqual(f["reconnects"], 1)
        self.assertEqual(self.etcd.get(HOST_KEY)[HOST_KEY]["lease"], f["lease"])
        self.wait_for(lambda: self.api("GET", "/v1/health").json["status"] == "ok", what="health ok")
        kinds = self.audit_kinds()
        self.assertEqual(kinds[:3], ["fleet_connected", "fleet_cut_off", "fleet_connected"], kinds)


if __name__ == "__main__":
    unittest.main()
