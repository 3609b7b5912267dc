"""out_of_memory on the real demo stack: the app really allocates and touches memory until its
RSS (from /proc) is over the check's limit. Guardian climbs its ladder and stops at the first
step that works, verified each time: shedding caches frees cache blocks; a leak survives that
and low-memory mode, so only a restart (in low-memory mode) frees it. With the app in its own
memory cgroup the kernel OOM-kills it for real, and Guardian brings it back in low-memory mode.
The app's data is intact after each."""

import os
import unittest

from harness import LONG_TIMEOUT_S, TIMEOUT_S
from stack import StackTestCase

MIB = 1 << 20


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def memory_cgroup_parent():
    """A memory cgroup folder this test may create children in, or None with why not."""
    if os.geteuid() != 0:
        return None, "needs root to create a memory cgroup"
    with open("/proc/self/cgroup") as f:
        lines = [line.strip().split(":", 2) for line in f]
    for _, controllers, path in lines:
        if "memory" in controllers.split(","):  # cgroup v1 memory hierarchy
            d = "/sys/fs/cgroup/memory" + path
            if os.path.exists(os.path.join(d, "memory.limit_in_bytes")):
                return d, ""
    for _, controllers, path in lines:
        if controllers == "":  # cgroup v2: needs the memory controller delegated here
            for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                d = root + path
                try:
                    with open(os.path.join(d, "cgroup.subtree_control")) as f:
                        if "memory" in f.read().split():
                            return d, ""
                except OSError:
                    pass
    return None, "no writable memory cgroup (v1 memory hierarchy or v2 with memory delegated)"


class OutOfMemoryTest(StackTestCase):
    def check(self, **params):
        p = {"service": "app"}
        p.update(params)
        return {"id": "app-mem", "mode": "out_of_memory", "interval_ms": 250, "params": p}

    def start_with_limit(self, **params):
        """Starts the stack with an RSS limit 96 MiB above the app's own footprint."""
        self.start_stack([self.check(rss_limit_mb=4096)])  # first learn the footprint
        base = rss_mb(self.service()["pid"])
        self.stop_all_daemons()
        self.start_stack([self.check(rss_limit_mb=base + 96, **params)])
        return self.app_get("/items")

    def test_cache_growth_healed_by_shedding_caches(self):
        before = self.start_with_limit()
        pid = self.service()["pid"]
        self.inject("out_of_memory", "--kind", "cache", "--mb", "192")
        inc = self.wait_incident("app-mem", timeout=LONG_TIMEOUT_S)
        self.assertTrue(inc["within_target"], inc)
        self.assertIn("RSS", inc["evidence"])
        remediate = [s for s in inc["steps"] if s["phase"] == "remediate"][-1]
        self.assertIn("shed caches", remediate["message"])
        # The first step was enough: same process, not in low-memory mode, data intact.
        self.assertEqual(self.service()["pid"], pid)
        st = self.app_get("/status")
        self.assertFalse(st["memory"]["low_memory"])
        self.assertEqual(st["memory"]["cache_bytes"], 0)
        self.assertEqual(self.app_get("/items"), before)

    def test_leak_healed_by_a_restart_in_low_memory_mode(self):
        before = self.start_with_limit()
        pid = self.service()["pid"]
        self.inject("out_of_memory", "--kind", "leak", "--mb", "192")
        # The leak may still be growing when Guardian first looks; shedding caches can then hold
        # for a moment, and a second incident climbs on. What must happen: a restart ends it.
        def restarted():
            for i in self.incidents("app-mem"):
                if i["state"] == "resolved":
                    inc = self.incident(i["id"])
                    rem = [s for s in inc["steps"] if s["phase"] == "remediate"]
                    if rem and "restarted in low-memory mode" in rem[-1]["message"]:
                        return inc
            return None
        inc = self.wait_for(restarted, LONG_TIMEOUT_S, "an incident healed by a restart")
        self.assertTrue(inc["within_target"], inc)
        self.assertNotEqual(self.service()["pid"], pid)
        self.wait_for(lambda: self.app_get("/readyz")["ready"], TIMEOUT_S, "the app ready")
        st = self.app_get("/status")
        self.assertTrue(st["memory"]["low_memory"])
        self.assertEqual(st["memory"]["leak_bytes"], 0)
        self.assertEqual(self.app_get("/items"), before)

    def test_low_memory_mode_left_once_memory_has_room_again(self):
        before = self.start_with_limit(low_memory_exit_ms=3000)
        self.inject("out_of_memory", "--kind", "leak", "--mb", "192")
        # The restart in low-memory mode freed the leak; with room to spare for 3 s, the check
        # opens an incident whose playbook turns the mode off again.
        def left():
            for i in self.incidents("app-mem"):
                if i["state"] == "resolved" and "memory healthy in low-memory mode" in i["evidence"]:
                    return self.incident(i["id"])
            return None
        inc = self.wait_for(left, LONG_TIMEOUT_S, "an incident that leaves low-memory mode")
        remediate = [s for s in inc["steps"] if s["phase"] == "remediate"][-1]
        self.assertIn("low-memory mode off", remediate["message"])
        self.assertTrue(any("restarted in low-memory mode" in s["message"]
                            for i in self.incidents("app-mem") if i["id"] < inc["id"]
                            for s in self.incident(i["id"])["steps"]), "the leak was healed first")
        self.wait_for(lambda: not self.app_get("/status")["memory"]["low_memory"], TIMEOUT_S,
                      "the app out of low-memory mode")
        self.assertEqual(self.app_get("/items"), before)

    def test_low_memory_mode_someone_else_set_is_kept(self):
        self.start_with_limit(low_memory_exit_ms=500)
        flags = os.path.join(self.stack, "run", "flags.json")
        with open(flags + ".tmp", "w") as f:
            f.write('{"seq": 900, "low_memory": true}')
        os.replace(flags + ".tmp", flags)  # an operator's choice, not this check's
        self.wait_for(lambda: self.app_get("/status")["memory"]["low_memory"], TIMEOUT_S,
                      "the app in low-memory mode")
        # Several exit windows pass: the mode is not the check's to leave.
        import time
        time.sleep(2)
        self.assertEqual(self.incidents("app-mem"), [])
        self.assertTrue(self.app_get("/status")["memory"]["low_memory"])

    def oom_diagnostics(self, pid, cg):
        """What the kernel says of the killed process's threads and its cgroup."""
        out = []
        for path in ("/proc/%d/status" % pid, os.path.join(cg, "memory.oom_control"),
                     os.path.join(cg, "cgroup.procs"), os.path.join(cg, "memory.usage_in_bytes")):
            try:
                with open(path) as f:
                    out.append("%s:\n%s" % (path, f.read()[:1500]))
            except OSError as e:
                out.append("%s: %s" % (path, e))
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                with open("/proc/%d/task/%s/wchan" % (pid, tid)) as f:
                    out.append("thread %s state %s wchan %s" % (tid, state, f.read()))
        except OSError as e:
            out.append("threads: %s" % e)
        return "\n".join(out)

    def remove_cgroup(self, cg):
        """Runs before the stack's own cleanup: stops the daemon (and so the app) first, since
        a cgroup with a process left in it cannot be removed."""
        import signal
        self.stop_all_daemons()
        if not os.path.isdir(cg):
            return
        def empty():
            with open(os.path.join(cg, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
            for p in pids:
                os.kill(p, signal.SIGKILL)
            return not pids
        self.wait_for(empty, TIMEOUT_S, "the test cgroup empty")
        os.rmdir(cg)

    def test_kernel_oom_kill_in_the_apps_cgroup(self):
        parent, why = memory_cgroup_parent()
        if not parent:
            self.skipTest(why)
        cg = os.path.join(parent, "guardian-test-%d" % os.getpid())
        self.addCleanup(self.remove_cgroup, cg)
        run = os.path.join(self.stack, "run")
        self.write_config(
            [self.check()],
            services=[self.app_service(cgroup=cg, memory_limit_mb=128)],
            port_registry=os.path.join(run, "ports.json"))
        self.start_daemon()
        self.wait_for(lambda: self.service().get("state") == "ready", TIMEOUT_S, "the app ready")
        before = self.app_get("/items")
        pid = self.service()["pid"]
        with open(os.path.join(cg, "cgroup.procs")) as f:
            self.assertIn(str(pid), f.read().split())  # the supervisor moved it in
        self.inject("out_of_memory", "--kind", "leak", "--mb", "256")
        try:
            inc = self.wait_incident("app-mem", timeout=LONG_TIMEOUT_S)
        except AssertionError as e:
            raise AssertionError("%s\n--- the killed app and its cgroup ---\n%s"
                                 % (e, self.oom_diagnostics(pid, cg))) from None
        self.assertIn("OOM-killed", inc["evidence"])
        self.assertTrue(inc["within_target"], inc)
        remediate = [s for s in inc["steps"] if s["phase"] == "remediate"][-1]
        self.assertIn("low-memory mode", remediate["message"])
        self.assertNotEqual(self.service()["pid"], pid)
        self.assertTrue(self.app_get("/status")["memory"]["low_memory"])
        self.assertEqual(self.app_get("/items"), before)


if __name__ == "__main__":
    unittest.main()
