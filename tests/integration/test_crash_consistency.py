"""Crash consistency: guardiand is killed (SIGKILL, by itself: GUARDIAN_CRASH_AT, test builds
only, docs/reliability.md) at every boundary of every playbook phase, in the middle of every
phase (just before one of its host calls acts) and in the middle of store writes (torn or
not), well over 100 times on one state dir. After each kill it is started again and must
settle: the store opens and passes integrity_check, no incident it had recorded is lost, none
is left unfinished or with a step `running`, the steps a kill cut short say so, the audit chain
verifies, the watched file is healed, and the ledger of the playbook's non-idempotent
remediation (tests/integration/playbooks/ledger.lua) shows no remediation applied twice
without a rollback between, and exactly one kept for each resolved incident."""

import os
import re
import signal
import sqlite3
import subprocess
import time
import unittest

from harness import GOOD_CONFIG, LONG_TIMEOUT_S, TERMINAL_STATES, GuardianTestCase, read_or_none, write_atomic

GARBAGE = "server: [port: {{ 8080\n"

PHASES = ("backup", "remediate", "verify", "rollback", "probe")


def boundary_points():
    """Each phase's three boundaries: its `running` row durable (before it acts), it ended
    (before its end is journaled), its end durable (before the next phase). Attempt 1 and 2
    of each incident pass backup, remediate and verify; probe runs twice (after verify of
    attempt 2 and on restart); rollback once."""
    points = []
    for phase in PHASES:
        for when in ("running", "ended", "journaled"):
            for n in ((1,) if phase == "rollback" else (1, 2)):
                points.append("step:%s:%s#%d" % (phase, when, n))
    return points + ["incident:opened#1"]


def mid_phase_points():
    """Just before a host call acts: backup makes 2 per attempt, remediate 2, verify 2 (its
    sleeps), rollback 2."""
    counts = {"backup": 4, "remediate": 4, "verify": 2, "rollback": 2}
    return ["action:%s#%d" % (phase, n) for phase, k in counts.items() for n in range(1, k + 1)]


def store_write_points():
    """The N-th write to the store's files since the start: the audit row of the start, then
    the incident's rows. Torn: half of the write reaches the file first."""
    return (["store_write#%d" % n for n in range(1, 51)] +
            ["store_write_torn#%d" % n for n in range(1, 26)])


class CrashConsistencyTest(GuardianTestCase):

    def setUp(self):
        super().setUp()
        self.app, _ = self.make_app_file("app")
        self.ledger = os.path.join(os.path.dirname(self.app), "ledger.txt")
        self.write_config([self.check("app", self.app, playbook="ledger", retries=4)],
                          test_playbooks=True)
        # One clean start so the detector keeps a last-known-good copy to restore.
        self.start_daemon()
        self.wait_version("app", GOOD_CONFIG)
        self.stop_daemon()
        self.known = {}  # incident id -> (check, mode, onset_at), as first seen
        self.kills = 0
        self.missed = []

    def db(self):
        return sqlite3.connect("file:%s/guardian.db?mode=ro" % self.state_dir, uri=True)

    def run_point(self, point):
        """Breaks the file, starts guardiand armed at `point`, waits for it to die, starts it
        again and checks that everything settled."""
        write_atomic(self.app, GARBAGE)
        d = self.start_daemon(wait_ready=False, env={"GUARDIAN_CRASH_AT": point})
        deadline = time.monotonic() + 20
        while d.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if d.alive():
            # The point was not on this run's path; stop it cleanly and still check.
            self.missed.append(point)
            d.proc.send_signal(signal.SIGTERM)
            d.proc.wait(timeout=15)
        else:
            self.assertEqual(d.proc.returncode, -signal.SIGKILL,
                             "%s: guardiand died otherwise; log:\n%s" % (point, d.log_tail()))
            self.assertIn("crash point", d.log(), point)
            self.kills += 1
        self.daemon = None
        unfinished = self.check_store(point, settled=False)

        self.start_daemon()
        self.wait_for(lambda: read_or_none(self.app) == GOOD_CONFIG and self.all_terminal(),
                      LONG_TIMEOUT_S, "%s: the file healed and every incident finished" % point)
        self.check_store(point, settled=True, resumed=unfinished)
        r = self.run_cli("audit", "verify")
        self.assertEqual(r.returncode, 0, "%s: %s%s" % (point, r.stdout, r.stderr))
        self.stop_daemon()

    def all_terminal(self):
        with self.db() as db:
            return db.execute("SELECT COUNT(*) FROM incidents WHERE state NOT IN (?, ?)",
                              TERMINAL_STATES).fetchone()[0] == 0

    def check_store(self, point, settled, resumed=()):
        """The invariants; returns the ids of incidents not yet finished."""
        db = self.db()
        try:
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok", point)
            rows = db.execute("SELECT id, check_id, mode, onset_at, state, reason FROM incidents"
                              ).fetchall()
            now = {r[0]: r for r in rows}
            for iid, ident in self.known.items():
                self.assertIn(iid, now, "%s: incident %d is lost" % (point, iid))
                self.assertEqual(now[iid][1:4], ident, point)
            for r in rows:
                self.known.setdefault(r[0], r[1:4])
            unfinished = [r[0] for r in rows if r[4] not in TERMINAL_STATES]
            steps = db.execute("SELECT incident_id, phase, status, message FROM steps").fetchall()
            for iid, _, status, message in steps:
                self.assertIn(iid, now, "%s: a step of an unknown incident %d" % (point, iid))
                if status == "interrupted":
                    self.assertIn("guardiand stopped", message, point)
            if settled:
                self.assertEqual(unfinished, [], point)
                self.assertEqual([s for s in steps if s[2] == "running"], [], point)
                for iid in resumed:
                    self.assertEqual(now[iid][4], "resolved", "%s: incident %d: %s"
                                     % (point, iid, now[iid]))
                    self.assertTrue(now[iid][5], point)
                    self.assertTrue([s for s in steps if s[0] == iid and s[1] == "probe"], point)
            self.check_ledger(point, {r[0]: r[4] for r in rows}, settled)
            return unfinished
        finally:
            db.close()

    def check_ledger(self, point, states, settled):
        applied = {}
        for line in (read_or_none(self.ledger) or "").splitlines():
            m = re.fullmatch(r"([+-])(\d+)", line)
            self.assertIsNotNone(m, "%s: ledger line %r" % (point, line))
            iid = int(m.group(2))
            # Journal first: nothing acts for an incident the store has no row of.
            self.assertIn(iid, states, "%s: remediation for unrecorded incident %d" % (point, iid))
            applied[iid] = applied.get(iid, 0) + (1 if m.group(1) == "+" else -1)
            self.assertIn(applied[iid], (0, 1),
                          "%s: incident %d's remediation applied twice without a rollback "
                          "between, or taken back twice" % (point, iid))
        if settled:
            for iid, state in states.items():
                if state == "resolved" and iid in applied:
                    self.assertEqual(applied[iid], 1, "%s: incident %d" % (point, iid))

    def run_points(self, points):
        for point in points:
            self.run_point(point)
        print("\n%s: %d points, %d kills, not on the path: %s"
              % (self.id().rsplit(".", 1)[-1], len(points), self.kills, self.missed or "none"))
        return self.kills

    def test_kills_at_every_phase_boundary(self):
        points = boundary_points()
        self.assertGreaterEqual(self.run_points(points), len(points) - 2, self.missed)

    def test_kills_in_the_middle_of_every_phase(self):
        points = mid_phase_points()
        self.assertEqual(self.run_points(points), len(points), self.missed)

    def test_kills_in_the_middle_of_store_writes(self):
        points = store_write_points()
        self.assertEqual(self.run_points(points), len(points), self.missed)


if __name__ == "__main__":
    unittest.main()
