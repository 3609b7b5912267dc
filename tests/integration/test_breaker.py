"""The remediation breaker in a fault storm: six watched files broken at once with a breaker of
three playbook attempts per window. Three are healed, then guardiand goes observe-only with the
reason in status, health and each waiting incident; the other three stay broken (nothing acts)
until the window has passed, when the breaker closes by itself and they are healed too."""

import sqlite3
import time
import unittest

from harness import GOOD_CONFIG
from test_api import GARBAGE, ApiTestCase, write_atomic

WINDOW_MS = 4000


class BreakerTest(ApiTestCase):

    def test_a_fault_storm_trips_the_breaker_and_it_closes_by_itself(self):
        apps = {}
        for i in range(6):
            apps["app%d" % i], _ = self.make_app_file("app%d" % i)
        self.write_config([self.check(c, path) for c, path in apps.items()],
                          breaker={"max_actions": 3, "window_ms": WINDOW_MS})
        self.start_daemon()
        for c in apps:
            self.wait_version(c, GOOD_CONFIG)
        st = self.status()
        self.assertEqual((st["mode"], st["breaker"]["open"], st["breaker"]["max_actions"]),
                         ("act", False, 3), st["breaker"])

        for path in apps.values():
            write_atomic(path, GARBAGE)

        def tripped():
            s = self.status()
            return s if s["breaker"]["open"] else None
        st = self.wait_for(tripped, what="the breaker to trip")
        tripped_at = time.monotonic()
        b = st["breaker"]
        self.assertEqual(st["mode"], "observe")
        self.assertIn("remediation breaker open: 3 playbook attempts across all checks", b["reason"])
        self.assertEqual(b["closes_at"] - b["since"], WINDOW_MS)
        self.assertEqual(self.health()["status"], "degraded")

        # Three healed; the other three wait, observed, with the breaker's reason.
        def split():
            healed = [c for c, p in apps.items() if self.read(p) == GOOD_CONFIG]
            waiting = [i for i in st_incidents() if i["observing"]]
            return (healed, waiting) if len(healed) == 3 and len(waiting) == 3 else None

        def st_incidents():
            return self.status()["incidents"]
        healed, waiting = self.wait_for(split, what="3 healed and 3 observed")
        for inc in waiting:
            self.assertIn("remediation breaker open", inc["reason"], inc)
        broken = [c for c in apps if c not in healed]
        self.assertEqual(sorted(i["check"] for i in waiting), sorted(broken))

        # A release while it is open resumes waiting incidents, which meet the breaker again.
        self.api("POST", "/v1/checks/%s/hold" % broken[0], {"reason": "look"}, expect=200)
        self.api("POST", "/v1/checks/%s/release" % broken[0], expect=200)

        # Nothing acts on them while it is open.
        while time.monotonic() < tripped_at + WINDOW_MS / 1000 - 0.5:
            for c in broken:
                self.assertEqual(self.read(apps[c]), GARBAGE, "%s healed while open" % c)
            time.sleep(0.1)

        # Closed by itself: the waiting incidents act and heal.
        for c in broken:
            self.wait_content(apps[c], GOOD_CONFIG)
        for c in apps:
            inc = self.wait_incident(c)
            self.assertEqual(inc["state"], "resolved", inc)
        st = self.status()
        self.assertEqual((st["mode"], st["breaker"]["open"]), ("act", False), st["breaker"])
        self.assertEqual(self.health()["status"], "ok")
        for c in broken:
            inc = self.incident(self.incidents(c)[0]["id"])
            # One observe step for the whole wait, however often waiting incidents were resumed.
            self.assertEqual(len([s for s in inc["steps"] if s["phase"] == "observe"
                                  and "breaker" in s["message"]]), 1, inc)
        self.stop_daemon()

        with sqlite3.connect("%s/guardian.db" % self.state_dir) as db:
            kinds = [k for (k,) in db.execute("SELECT kind FROM events WHERE kind LIKE 'breaker%' "
                                              "ORDER BY id")]
        self.assertEqual(kinds, ["breaker_open", "breaker_closed"])

    def read(self, path):
        with open(path) as f:
            return f.read()


if __name__ == "__main__":
    unittest.main()
