"""db_corruption on the real demo stack: the app's live database corrupted in place (its items table's
page overwritten, the header zeroed, the file cut short, a stale -wal put back beside it). Guardian sees it, keeps the
broken files aside, restores its newest verified backup, has the app reopen it, and the incident
says what was restored and how old it was; the app serves the rows written before that backup
again."""

import json
import os
import time
import unittest

from harness import LONG_TIMEOUT_S, TIMEOUT_S
from stack import StackTestCase


class DbCorruptionTest(StackTestCase):
    def check(self):
        return {"id": "app-db", "mode": "db_corruption", "interval_ms": 300,
                "params": {"service": "app", "path": os.path.join(self.stack, "data", "app.db"),
                           "backup_interval_ms": 500, "keep_backups": 3}}

    def backups(self):
        d = os.path.join(self.state_dir, "checks", "app-db", "backups")
        try:
            return sorted(int(f[:-3]) for f in os.listdir(d) if f.endswith(".db"))
        except FileNotFoundError:
            return []

    def prepare(self):
        self.start_stack([self.check()])
        # A row written now, then a verified backup taken after it: nothing of it may be lost.
        self.post_item("written before the fault")
        written = int(time.time() * 1000)
        self.wait_for(lambda: any(t > written for t in self.backups()), TIMEOUT_S,
                      "a verified backup taken after the write")
        before = self.app_get("/items")
        self.assertLessEqual(len(self.backups()), 3)  # keep_backups
        return before

    def post_item(self, body):
        import urllib.request
        req = urllib.request.Request(
            "http://127.0.0.1:%d/items" % self.service()["port"],
            data=json.dumps({"body": body}).encode(), method="POST",
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            self.assertEqual(r.status, 201)

    def heal_and_check(self, kind, before):
        fault = self.inject("db_corruption", "--kind", kind)
        inc = self.wait_incident("app-db", timeout=LONG_TIMEOUT_S)
        self.assertTrue(inc["within_target"], inc)
        remediate = [s for s in inc["steps"] if s["phase"] == "remediate"][-1]
        self.assertIn("restored verified backup", remediate["message"])
        self.assertIn("writes made after it may be lost", remediate["message"])
        backup = [s for s in inc["steps"] if s["phase"] == "backup"][-1]
        self.assertIn("kept db", backup["message"])
        # The app serves its data again: every row written before the backup.
        self.wait_for(lambda: self.app_get("/items") == before, TIMEOUT_S,
                      "the app to serve the restored rows")
        # Ready again (a stale -wal came back while the app was down: it is booting anew).
        self.wait_for(lambda: self.app_get("/readyz")["ready"], TIMEOUT_S, "the app ready")
        return fault, inc

    def test_table_page_overwritten(self):
        before = self.prepare()
        _, inc = self.heal_and_check("pages", before)
        self.assertIn("quick_check", inc["evidence"] + " ".join(s["message"] for s in inc["steps"]))

    def test_zeroed_header(self):
        before = self.prepare()
        _, inc = self.heal_and_check("header", before)
        self.assertIn("SQLITE_NOTADB", inc["evidence"])

    def test_file_cut_short(self):
        before = self.prepare()
        self.heal_and_check("truncate", before)

    def test_stale_wal_left_beside_it(self):
        before = self.prepare()
        fault, inc = self.heal_and_check("stale-wal", before)
        self.assertGreater(fault["wal_bytes"], 0)
        # Replaying the old -wal made two b-trees claim the same pages: quick_check says so.
        self.assertIn("reference to page", inc["evidence"] + " ".join(s["message"] for s in inc["steps"]))
        # The restore removed the stale -wal with the file it belonged to.
        self.assertNotIn("chaos_stale_wal", json.dumps(self.app_get("/status")))


if __name__ == "__main__":
    unittest.main()
