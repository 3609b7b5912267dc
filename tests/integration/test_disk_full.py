"""disk_full on the real demo stack, on a real size-limited filesystem: the test mounts a 24 MiB
tmpfs and puts the whole stack (database, logs, snapshots, temp) on it, then fills it for real
with old rotated logs, old snapshots and temp files until the app's writes fail with ENOSPC.
Guardian frees space cheapest first (temp files, old snapshots, then rotating and compressing
logs), keeps the newest snapshots, moves what it takes away to a reserve on another filesystem
(so rollback could restore it), and the app writes again with its data intact. Needs root to
mount; skipped with the reason otherwise."""

import os
import shutil
import subprocess
import unittest

from harness import LONG_TIMEOUT_S, TIMEOUT_S
from stack import StackTestCase

MIB = 1 << 20


class DiskFullTest(StackTestCase):
    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("needs root to mount a size-limited tmpfs")
        # The seeded stack moves onto a fresh 24 MiB tmpfs mounted in its place.
        seeded = self.stack + ".seeded"
        os.rename(self.stack, seeded)
        os.makedirs(self.stack)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0755", "tmpfs",
                            self.stack], capture_output=True, text=True)
        if r.returncode != 0:
            os.rmdir(self.stack)
            os.rename(seeded, self.stack)
            self.skipTest("cannot mount a tmpfs here: %s" % r.stderr.strip())
        self.addCleanup(self.unmount)
        shutil.copytree(seeded, self.stack, dirs_exist_ok=True)
        self.reserve = self.path("reserve")  # on the test's own filesystem, not the tmpfs
        os.makedirs(self.reserve)

    def unmount(self):
        """Runs before the stack's own cleanup: the daemon (and the app) stop first, or the
        filesystem would still be busy."""
        self.stop_all_daemons()
        self._kill_stack_processes()
        subprocess.run(["umount", "-l", self.stack], check=False)

    def check(self, reserve=True, **floors):
        s = self.stack
        params = {"service": "app", "path": os.path.join(s, "data"),
                  "paths": [os.path.join(s, "logs"), os.path.join(s, "snapshots")],
                  "min_free_percent": 10,
                  "log_dir": os.path.join(s, "logs"),
                  "snapshot_dir": os.path.join(s, "snapshots"), "keep_snapshots": 2,
                  "tmp_dirs": [os.path.join(s, "tmp")]}
        params.update(floors)
        if reserve:
            params["reserve_dir"] = self.reserve
            params["allow_paths"] = [self.reserve]
        return {"id": "app-disk", "mode": "disk_full", "interval_ms": 300, "params": params}

    def free(self):
        st = os.statvfs(self.stack)
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    def snapshot(self):
        import json
        import urllib.error
        import urllib.request
        req = urllib.request.Request("http://127.0.0.1:%d/control/snapshot" % self.service()["port"],
                                     data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def prepare(self, reserve=True, **check):
        self.start_stack([self.check(reserve, **check)])
        for _ in range(3):  # snapshots of its own, newer than the injected ones
            self.assertEqual(self.snapshot()[0], 200)
        return self.app_get("/items"), sorted(os.listdir(os.path.join(self.stack, "snapshots")))

    def test_full_disk_freed_cheapest_first_into_the_reserve(self):
        before, own = self.prepare()
        fault = self.inject("disk_full", "--kind", "mixed")
        # Really full (statvfs says so): under the 10% threshold. Not a fixed byte count: the
        # app (or Guardian, woken by the app's ENOSPC) may free a snapshot's 64 KiB at once.
        self.assertLess(fault["free_after"], self.free()[1] // 10)
        inc = self.wait_incident("app-disk", timeout=LONG_TIMEOUT_S)
        self.assertTrue(inc["within_target"], inc)
        self.assertIn("under 10%", inc["evidence"])
        remediate = [s for s in inc["steps"] if s["phase"] == "remediate"][-1]["message"]
        # The cheapest step came first: the temp files (the injector's upload, and a last-bytes
        # file when its rounding left any bytes over).
        self.assertRegex(remediate, r"^moved [12] temp files")
        self.assertIn("old snapshots", remediate)
        self.assertIn("kept the newest 2", remediate)
        free, total = self.free()
        self.assertGreaterEqual(free, total // 10)
        # The newest snapshots stay; what was taken away is in the reserve, not lost.
        snaps = sorted(os.listdir(os.path.join(self.stack, "snapshots")))
        self.assertEqual(snaps, own[-2:])
        moved = os.listdir(os.path.join(self.reserve, "incident-%d" % inc["id"]))
        self.assertIn("upload-chaos.part", moved)
        self.assertIn(own[0], moved)
        # The app writes again, and serves every row it had.
        self.assertEqual(self.snapshot()[0], 200)
        self.assertEqual(self.app_get("/items"), before)

    def test_a_disk_that_cannot_be_freed_enough_gets_its_files_back_and_escalates(self):
        # A floor no cleanup can reach (64 MiB free on a 24 MiB filesystem): each attempt moves
        # files to the reserve, fails, and its rollback moves them back; then the check is held
        # with the reason, not looped. The disk is filled while guardiand is down, so the first
        # attempt already meets the full disk.
        before, own = self.prepare()
        self.stop_all_daemons()
        self.inject("disk_full", "--kind", "mixed")
        self.write_config([self.check(min_free_mb=64)], services=[self.app_service()],
                          port_registry=os.path.join(self.stack, "run", "ports.json"))
        self.start_daemon()
        inc = self.wait_incident("app-disk", state="escalated", timeout=LONG_TIMEOUT_S)
        rollbacks = [s for s in inc["steps"] if s["phase"] == "rollback"]
        self.assertTrue(rollbacks, inc)
        self.assertRegex(rollbacks[0]["message"], r"moved \d+ files back from the reserve")
        self.assertIn("upload-chaos.part", os.listdir(os.path.join(self.stack, "tmp")))
        snaps = os.listdir(os.path.join(self.stack, "snapshots"))
        for name in own:
            self.assertIn(name, snaps)
        for d in os.listdir(self.reserve):
            self.assertEqual(os.listdir(os.path.join(self.reserve, d)), [], d)
        self.wait_for(lambda: self.app_get("/readyz")["ready"], TIMEOUT_S, "the app ready")
        self.assertEqual(self.app_get("/items"), before)

    def test_logs_rotated_and_compressed_without_a_reserve(self):
        before, _ = self.prepare(reserve=False)
        self.inject("disk_full", "--kind", "logs")
        inc = self.wait_incident("app-disk", timeout=LONG_TIMEOUT_S)
        self.assertTrue(inc["within_target"], inc)
        remediate = [s for s in inc["steps"] if s["phase"] == "remediate"][-1]["message"]
        self.assertIn("rotated 1 logs", remediate)
        # 128 KiB left is too little to compress a 5 MiB log: the oldest rotated logs go first
        # (no reserve: deleted, and said so), then the rest is compressed.
        self.assertRegex(remediate, r"deleted \d old logs \([0-9.]+ MiB\) to make room")
        self.assertIn("compressed", remediate)
        logs = os.listdir(os.path.join(self.stack, "logs"))
        self.assertIn("app.log.chaos-1.gz", logs)
        self.assertNotIn("app.log.chaos-1", logs)
        # The app reopened its log after the rotation and writes a fresh app.log.
        self.wait_for(lambda: os.path.getsize(os.path.join(self.stack, "logs", "app.log")) > 0,
                      TIMEOUT_S, "a fresh app.log")
        free, total = self.free()
        self.assertGreaterEqual(free, total // 10)
        self.assertEqual(self.snapshot()[0], 200)
        self.assertEqual(self.app_get("/items"), before)


if __name__ == "__main__":
    unittest.main()
