"""The store when its disk refuses writes. Faults are injected below SQLite through guardiand's
VFS seam (POST /v1/debug/store-fault, test builds only): ENOSPC, EIO and torn (short) writes.
Guardian must keep healing, say the store is degraded in health, status and metrics while
journal writes wait in memory, and write every one of them, in order, once the disk recovers;
the database stays intact and the audit chain whole. The last test fills a real size-limited
tmpfs that holds the state dir itself, and the disk_full playbook must free it."""

import os
import sqlite3
import subprocess
import unittest

from harness import GOOD_CONFIG, TIMEOUT_S
from test_api import GARBAGE, ApiTestCase, write_atomic

MIB = 1 << 20


class StoreFaultTest(ApiTestCase):

    def fault(self, kind, **kw):
        return self.api("POST", "/v1/debug/store-fault", dict({"fault": kind}, **kw), expect=200).json

    def store(self):
        return self.status()["store"]

    def metric(self, name):
        text = self.api("GET", "/metrics", expect=200).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        self.fail("no %s in /metrics" % name)

    def assert_db_whole(self, incident_ids):
        """The file after guardiand stopped: intact, every incident there with its steps all
        finished, and the audit chain verified by the CLI."""
        db = sqlite3.connect("%s/guardian.db" % self.state_dir)
        try:
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            for iid in incident_ids:
                row = db.execute("SELECT state FROM incidents WHERE id=?", (iid,)).fetchone()
                self.assertIsNotNone(row, "incident %d is lost" % iid)
                self.assertEqual(row[0], "resolved")
                steps = db.execute("SELECT phase, status FROM steps WHERE incident_id=? ORDER BY id",
                                   (iid,)).fetchall()
                self.assertTrue(steps, "incident %d has no steps" % iid)
                self.assertNotIn("running", [s for _, s in steps], steps)
                phases = [p for p, _ in steps]
                self.assertLess(phases.index("backup"), phases.index("remediate"), phases)
        finally:
            db.close()
        r = self.run_cli("audit", "verify")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_injected_write_faults_are_buffered_and_flushed_in_order(self):
        self.start_one()
        ids = []
        for kind in ("enospc", "eio", "short_write"):
            with self.subTest(kind=kind):
                before = self.store()
                self.assertEqual(before["state"], "ok", before)
                self.fault(kind)
                newer = max([i["id"] for i in self.incidents("app")] or [0])
                write_atomic(self.app, GARBAGE)
                # Healed while the journal waits in memory.
                self.wait_content(self.app, GOOD_CONFIG)
                st = self.wait_for(lambda: self.store()["pending_writes"] > 0 and self.store(),
                                   what="journal writes waiting in memory")
                self.assertEqual(st["state"], "degraded", st)
                self.assertGreater(st["write_errors"], before["write_errors"], st)
                self.assertTrue(st["last_error"], st)
                self.assertIsNotNone(st["degraded_since"], st)
                self.assertEqual(st["dropped_writes"], 0, st)
                self.assertEqual(self.health()["status"], "degraded")
                self.assertEqual(self.health()["store"], "degraded")
                self.assertEqual(self.metric("guardian_store_degraded"), 1)
                self.assertGreater(self.metric("guardian_store_pending_writes"), 0)
                r = self.run_cli("status")
                self.assertIn("store degraded: the disk refuses writes", r.stdout)
                # Reads answer from disk meanwhile: the new incident is not there yet.
                self.assertFalse([i for i in self.incidents("app") if i["id"] > newer])

                self.fault("none")
                self.wait_for(lambda: self.store()["state"] == "ok", what="the store to recover")
                inc = self.wait_incident("app", newer_than=newer)
                self.assertEqual(inc["state"], "resolved", inc)
                full = self.incident(inc["id"])
                self.assertFalse([s for s in full["steps"] if s["status"] == "running"], full)
                self.assertEqual(self.health()["status"], "ok")
                self.assertEqual(self.metric("guardian_store_degraded"), 0)
                self.assertGreaterEqual(self.metric("guardian_store_write_errors_total"),
                                        st["write_errors"])
                ids.append(inc["id"])
        self.assertEqual(len(set(ids)), 3, ids)
        self.stop_daemon()
        self.assert_db_whole(ids)

    def test_a_fault_plan_is_refused_when_unknown(self):
        self.start_one()
        r = self.api("POST", "/v1/debug/store-fault", {"fault": "gremlins"})
        self.assert_error(r, 400, "enospc")

    def test_disk_full_heals_the_filesystem_the_store_is_on(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a size-limited tmpfs")
        os.makedirs(self.state_dir)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m,mode=0755", "tmpfs",
                            self.state_dir], capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs here: %s" % r.stderr.strip())
        self.addCleanup(lambda: subprocess.run(["umount", "-l", self.state_dir], check=False))
        self.addCleanup(self.stop_all_daemons)
        tmp = os.path.join(self.state_dir, "tmp")
        os.makedirs(tmp)
        disk = {"id": "state-disk", "mode": "disk_full", "interval_ms": 200,
                "params": {"path": self.state_dir, "tmp_dirs": [tmp], "min_free_percent": 20}}
        self.app, _ = self.make_app_file("app")
        self.write_config([self.check("app", self.app), disk])
        self.start_daemon()
        self.wait_version("app", GOOD_CONFIG)
        errors_before = self.store()["write_errors"]

        # Fill it to the last block: SQLite's next page has nowhere to go.
        n = 0
        for size in (MIB, 64 << 10, 4 << 10):
            while True:
                try:
                    with open(os.path.join(tmp, "fill-%04d" % n), "wb") as f:
                        f.write(b"\0" * size)
                    n += 1
                except OSError:
                    os.remove(os.path.join(tmp, "fill-%04d" % n))
                    break
        self.assertLess(os.statvfs(self.state_dir).f_bavail, 2)

        inc = self.wait_incident("state-disk", timeout=TIMEOUT_S * 2)
        self.assertEqual(inc["state"], "resolved", inc)
        self.assertFalse(os.listdir(tmp))
        st = self.wait_for(lambda: self.store()["state"] == "ok" and self.store(),
                           what="the store to recover")
        self.assertGreater(st["write_errors"], errors_before,
                           "the store never met the full disk: %s" % st)
        self.assertEqual(st["dropped_writes"], 0, st)
        # Still healing what it watches.
        self.break_and_heal("app", self.app)
        self.stop_daemon()
        self.assert_db_whole([inc["id"]])


if __name__ == "__main__":
    unittest.main()
