"""The audit trail end to end: what operators ask (hold, release, run, reload) and what a
playbook does (each host call that acts) lands in the store's hash-chained `events` table,
`guardian audit verify` vouches for it, and after the database is edited directly (sqlite3, as
an intruder would) it names the first row that no longer fits."""

import json
import sqlite3
import unittest

from harness import GOOD_CONFIG, TIMEOUT_S
from test_api import GARBAGE, ApiTestCase, write_atomic


class AuditTrailTest(ApiTestCase):

    def db_path(self):
        return "%s/guardian.db" % self.state_dir

    def rows(self):
        with sqlite3.connect(self.db_path()) as db:
            return db.execute("SELECT id, actor, kind, check_id, detail FROM events ORDER BY id"
                              ).fetchall()

    def tamper(self, sql):
        db = sqlite3.connect(self.db_path())
        try:
            db.executescript(sql)
            db.commit()
        finally:
            db.close()

    def verify(self, rc):
        r = self.run_cli("audit", "verify")
        self.assert_cli(r, rc)
        j = self.run_cli("audit", "verify", "--json")
        self.assertEqual(j.returncode, rc, j.stderr)
        return r.stdout, json.loads(j.stdout)

    def test_operator_and_playbook_actions_are_chained_and_tampering_is_named(self):
        self.start_one()
        self.api("POST", "/v1/checks/app/hold", {"reason": "audit test"}, expect=200)
        self.api("POST", "/v1/checks/app/release", expect=200)
        write_atomic(self.app, GARBAGE)
        self.wait_content(self.app, GOOD_CONFIG)
        self.wait_incident("app")
        self.api("POST", "/v1/reload", expect=200)
        self.stop_daemon()

        rows = self.rows()
        kinds = [(actor, kind) for _, actor, kind, _, _ in rows]
        for want in [("guardiand", "start"), ("api", "hold"), ("api", "release"),
                     ("api", "reload_request"), ("guardiand", "reload"),
                     ("playbook:missing_config", "action")]:
            self.assertIn(want, kinds, rows)
        actions = [d for _, actor, kind, check, d in rows if kind == "action" and check == "app"]
        # The playbook restored the file: that copy is in the trail with its phase and arguments.
        self.assertTrue(any(d.startswith("remediate: guardian.fs.copy(") and self.app in d
                            for d in actions), actions)
        self.assertEqual([r[0] for r in rows], list(range(1, len(rows) + 1)))

        text, j = self.verify(0)
        self.assertIn("audit trail ok: %d rows" % len(rows), text)
        self.assertEqual((j["ok"], j["rows"], j["head_id"]), (True, len(rows), len(rows)))
        head = j["head"]
        self.assertRegex(head, "^[0-9a-f]{64}$")

        # The hold's reason rewritten: that row is named.
        hold_id = next(i for i, actor, kind, _, _ in rows if kind == "hold" and actor == "api")
        self.tamper("UPDATE events SET detail='routine' WHERE id=%d" % hold_id)
        text, j = self.verify(1)
        self.assertIn("audit trail broken at row %d:" % hold_id, text)
        self.assertEqual((j["ok"], j["broken_row"], j["rows"]), (False, hold_id, hold_id - 1))

        # Put back, the chain holds again with the same head: verification reads, never rewrites.
        self.tamper("UPDATE events SET detail='audit test' WHERE id=%d" % hold_id)
        self.assertEqual(self.verify(0)[1]["head"], head)

        # A playbook action deleted: the row after it is named, and why.
        action_id = next(i for i, _, kind, _, _ in rows if kind == "action")
        self.tamper("DELETE FROM events WHERE id=%d" % action_id)
        text, j = self.verify(1)
        self.assertEqual(j["broken_row"], action_id + 1, text)
        self.assertIn("row %d before it is missing" % action_id, text)

    def test_the_daemon_checks_the_trail_at_start_and_says_where_it_broke(self):
        self.start_one()
        self.api("POST", "/v1/checks/app/hold", {"reason": "one"}, expect=200)
        self.api("POST", "/v1/checks/app/release", expect=200)
        self.stop_daemon()
        self.tamper("UPDATE events SET actor='escalation' WHERE id=2")

        self.start_daemon()
        self.wait_log("audit trail broken at row 2")
        st = self.api("GET", "/v1/status", expect=200).json
        self.assertEqual(st["audit"]["ok"], False, st["audit"])
        self.assertEqual(st["audit"]["broken_row"], 2)
        # It keeps appending (and acting): the break is reported, history is not rewritten.
        self.api("POST", "/v1/checks/app/hold", {"reason": "two"}, expect=200)
        self.wait_for(lambda: any(r[4] == "two" for r in self.rows()), what="the new hold row",
                      timeout=TIMEOUT_S)
        self.stop_daemon()
        self.assertEqual(self.verify(1)[1]["broken_row"], 2)


if __name__ == "__main__":
    unittest.main()
