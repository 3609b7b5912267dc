"""Hostile playbooks: a playbook that tries something the sandbox forbids must fail its step with
a message naming what was refused, escalate (retries 0) and hold its check, touch nothing outside
its declared paths, and leave the daemon alive and healing its other checks.

HostilePlaybookTest runs one playbook per daemon (with a restart, a hung child and SIGTERM);
HostileAttemptsTest is table-driven: each attempt is a check of its own whose playbook
(hostile_attempts, or hostile_fs for paths) makes the attempt its check id names, and each group
of attempts runs in one guardiand beside a normal check. docs/reliability.md
("Hostile playbooks") maps the attempts to the kinds of abuse they stand for."""

import ctypes
import os
import subprocess
import sys
import time
import unittest

from harness import (GOOD_CONFIG, REPO_PLAYBOOKS, TEST_PLAYBOOKS, TIMEOUT_S, GuardianTestCase,
                     each_process, http_request, read_or_none, read_text, write_atomic)

PWNED = "/etc/guardian-pwned"
GARBAGE = "server: [port: {{ 8080\n"
SECRET = "the file outside every declared path\n"


def assert_refused(test, inc, playbook, expected):
    """The incident of a check whose hostile playbook (retries 0) was stopped: escalated after
    one attempt whose remediate step failed with every phrase of `expected` in its message."""
    test.assertEqual(inc["state"], "escalated", inc)
    test.assertEqual(inc["playbook"], playbook)
    test.assertEqual(inc["attempts"], 1, "retries 0: one attempt only")
    step = test.assert_step(inc, "remediate", "failed", attempt=1)
    for phrase in expected:
        test.assertIn(phrase, step["message"], inc)
    test.assertIn("gave up after 1 attempt(s)", inc["reason"])
    test.assertIn("remediate failed", inc["reason"])
    test.assertIsNone(inc["recovered_at"])
    test.assert_no_running_steps(inc)
    test.assertFalse([s for s in inc["steps"] if s["phase"] in ("verify", "probe") and s["status"] == "ok"])
    return step


class HostilePlaybookTest(GuardianTestCase):

    def setUp(self):
        super().setUp()
        self.pwned_before = os.path.lexists(PWNED)
        self.addCleanup(self._check_pwned)

    def _check_pwned(self):
        # If a sandbox escape created it, remove it so later runs start clean (the test has
        # already failed on it).
        if not self.pwned_before and os.path.lexists(PWNED):
            os.remove(PWNED)

    def run_hostile(self, playbook, expected, setup=None):
        hostile, _ = self.make_app_file("hostile")
        normal, _ = self.make_app_file("normal", content=GOOD_CONFIG.replace("8080", "8181"))
        normal_good = read_text(normal)
        if setup:
            setup(os.path.dirname(hostile))
        self.write_config([
            self.check("hostile", hostile, playbook=playbook, retries=0),
            self.check("normal", normal),
        ], test_playbooks=True)
        self.start_daemon()
        self.wait_version("hostile", GOOD_CONFIG)
        self.wait_version("normal", normal_good)

        write_atomic(hostile, GARBAGE)
        summary = self.wait_incident("hostile", timeout=TIMEOUT_S * 2)
        inc = self.incident(summary["id"])
        assert_refused(self, inc, playbook, expected)

        self.wait_held("hostile")
        self.assertIn("escalated", self.check_status("hostile")["hold_reason"])
        self.assertFalse(os.path.lexists(PWNED), "%s was created by playbook %s" % (PWNED, playbook))
        self.assertEqual(read_or_none(hostile), GARBAGE, "the hostile playbook changed nothing")
        self.assertTrue(self.daemon.alive())

        # The daemon is still healing its other check with the shipped playbook.
        write_atomic(normal, GARBAGE)
        self.wait_content(normal, normal_good)
        healed = self.wait_incident("normal")
        self.assertEqual(healed["state"], "resolved", healed)
        self.assertIs(healed["within_target"], True)
        # The held check does not act again while the fault persists.
        self.assertEqual(len(self.incidents("hostile")), 1)
        self.assertTrue(self.check_status("hostile")["held"])
        self.stop_daemon()
        return inc

    def test_hold_survives_restart_and_lifts_when_fixed(self):
        inc = self.run_hostile("hostile_os_execute", ["'os.execute' is not available"])
        hostile = self.path("hostile", "app.yaml")
        # run_hostile stopped the daemon; the hold was persisted and comes back with it.
        self.start_daemon()
        self.wait_for(lambda: self.status_json()["pid"] == self.daemon.pid, what="fresh status.json")
        status = self.check_status("hostile")
        self.assertTrue(status["held"], status)
        self.assertIn("incident %d" % inc["id"], status["hold_reason"])
        # Still broken, still held: no new incident however many probes run.
        time.sleep(1.0)  # five probe intervals
        self.assertEqual(len(self.incidents("hostile")), 1)
        # The operator fixes the file: the automatic hold lifts on the next healthy probe.
        write_atomic(hostile, GOOD_CONFIG)
        self.wait_for(lambda: self.check_status("hostile")["held"] is False, what="the hold to lift")
        self.assertIn("hold lifted", self.daemon.log())
        # Armed again: the next fault opens a new incident (escalated again by this playbook).
        write_atomic(hostile, GARBAGE)
        again = self.wait_incident("hostile", newer_than=inc["id"])
        self.assertEqual(again["state"], "escalated")
        self.stop_daemon()

    def hung_children(self, path):
        """pids of hostile_hung_child's program for this test (its argv holds `path`)."""
        return [pid for pid, argv in each_process("cmdline")
                if path.encode() in argv and any(b"time.sleep(60)" in a for a in argv)]

    def test_hung_child_is_killed_at_the_phase_deadline(self):
        self.run_hostile("hostile_hung_child", ["ran past its deadline of 1500 ms"])
        hostile = self.path("hostile", "app.yaml")
        self.assertEqual(self.hung_children(hostile), [], "the hung program outlived its phase")

    def test_sigterm_kills_a_running_child_and_exits_cleanly(self):
        hostile, _ = self.make_app_file("hostile")
        self.write_config([self.check("hostile", hostile, playbook="hostile_hung_child", retries=0)],
                          test_playbooks=True)
        self.start_daemon()
        self.wait_version("hostile", GOOD_CONFIG)
        write_atomic(hostile, GARBAGE)
        self.wait_for(lambda: self.hung_children(hostile), what="the playbook's program to run")
        self.stop_daemon()
        self.assertEqual(self.hung_children(hostile), [], "the program outlived guardiand")
        inc = self.incidents("hostile")[0]
        inc = self.incident(inc["id"])
        self.assert_no_running_steps(inc)
        self.assert_step(inc, "remediate", "interrupted")

    def test_os_execute(self):
        self.run_hostile("hostile_os_execute", ["'os.execute' is not available in the playbook sandbox"])

    def test_io_open(self):
        self.run_hostile("hostile_io_open", ["undefined global 'io'"])

    def test_require(self):
        self.run_hostile("hostile_require", ["undefined global 'require'"])

    def test_infinite_loop(self):
        self.run_hostile("hostile_loop", ["instruction budget exceeded"])

    def test_unbounded_memory(self):
        self.run_hostile("hostile_memory", ["not enough memory"])

    def test_write_outside_declared_paths(self):
        self.run_hostile("hostile_write_outside",
                         ["outside what check 'hostile' declares writable", PWNED])

    def test_write_through_dotdot(self):
        self.run_hostile("hostile_traversal", ["outside what check 'hostile' declares writable"])

    def test_write_through_symlink(self):
        self.run_hostile("hostile_symlink_escape", ["outside what check 'hostile' declares writable"],
                         setup=lambda folder: os.symlink("/etc", os.path.join(folder, "escape")))

    def test_shell_string_is_refused_but_argv_runs(self):
        inc = self.run_hostile("hostile_shell_string", ["bad argument #1 to 'run'", "table expected, got string"])
        step = self.assert_step(inc, "remediate", "failed")
        # The argv form ran (and its output reached the step message through guardian.log).
        self.assertIn("argv form: code 0, stdout argv-form-ran", step["message"])
        self.assertFalse(os.path.exists(self.path("hostile", "app.yaml.shell-marker")),
                         "a command-line string went through a shell")


def compile_bytecode(source):
    """Real Lua 5.4 bytecode of `source`, compiled and dumped by the system's liblua (through
    ctypes: there is no luac on the machine)."""
    lua = ctypes.CDLL("liblua5.4.so.0")
    lua.luaL_newstate.restype = ctypes.c_void_p
    lua.luaL_loadstring.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    writer_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                   ctypes.c_void_p)
    lua.lua_dump.argtypes = [ctypes.c_void_p, writer_type, ctypes.c_void_p, ctypes.c_int]
    lua.lua_close.argtypes = [ctypes.c_void_p]
    out = bytearray()

    def write(_state, data, size, _ud):
        out.extend(ctypes.string_at(data, size))
        return 0
    writer = writer_type(write)
    state = lua.luaL_newstate()
    try:
        if lua.luaL_loadstring(state, source.encode()) != 0 or lua.lua_dump(state, writer, None, 0) != 0:
            raise RuntimeError("liblua could not compile %r" % source)
    finally:
        lua.lua_close(state)
    assert out.startswith(b"\x1bLua\x54"), out[:8]
    return bytes(out)


def snapshot(folder):
    """Every path below `folder`: its type and mode, size, mtime and (files) content."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            content = None
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    content = f.read()
            out[os.path.relpath(path, folder)] = (st.st_mode, st.st_size, st.st_mtime_ns, content)
    return out


def start_ticks(pid):
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def running(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


READ = "declares readable"
WRITE = "declares writable"
BUDGET = "instruction budget exceeded (10000000)"

# The Lua environment. (check id, phrases the failed step's message must hold)
LUA_ATTEMPTS = [
    ("os-execute", ["'os.execute' is not available in the playbook sandbox"]),
    ("os-remove", ["'os.remove' is not available in the playbook sandbox"]),
    ("os-exit", ["'os.exit' is not available in the playbook sandbox"]),
    ("io-open", ["undefined global 'io'"]),
    ("io-popen", ["undefined global 'io'"]),
    ("io-via-g", ["undefined global 'io'"]),
    ("debug-registry", ["undefined global 'debug'"]),
    ("debug-sethook", ["undefined global 'debug'"]),
    ("require", ["undefined global 'require'"]),
    ("package-loadlib", ["undefined global 'package'"]),
    ("load-bytecode", ["undefined global 'load'"]),
    ("dofile-bytecode", ["undefined global 'dofile'"]),
    ("string-dump", ["'string.dump' is not available in the playbook sandbox"]),
    ("string-metatable", ["attempt to index a boolean value"]),
    ("rawset-host", ["undefined global 'rawset'"]),
    ("host-table-write", ["'guardian.fs' is read-only in the playbook sandbox"]),
    ("host-metatable", ["cannot change a protected metatable"]),
    ("host-through-g", ["'guardian.fs' is read-only in the playbook sandbox"]),
    ("coroutine-wrap", ["undefined global 'coroutine'"]),
    ("gc-finalizer", ["'__gc' metamethods are not available in the playbook sandbox"]),
    ("collectgarbage", ["undefined global 'collectgarbage'"]),
]

# CPU and memory, under the daemon's default limits: 10M instructions, 32 MiB.
BUDGET_ATTEMPTS = [
    ("loop-in-pcall", [BUDGET]),
    ("xpcall-handler", [BUDGET]),
    ("error-in-pcall", [BUDGET]),
    ("yield-in-pcall", [BUDGET]),
    ("gsub-callback", [BUDGET]),
    ("sort-comparator", [BUDGET]),
    ("concat-virtual", [BUDGET]),
    ("sort-virtual", [BUDGET]),
    ("pattern-backtrack", [BUDGET + " matching a pattern in string.find"]),
    ("pattern-optional", [BUDGET + " matching a pattern in string.match"]),
    ("pattern-in-pcall", [BUDGET + " matching a pattern in string.gsub"]),
    ("pattern-gmatch", [BUDGET + " matching a pattern in string.gmatch"]),
    ("slow-compare", [BUDGET + " (the last ", " ms of CPU)"]),
    ("slow-scan", [BUDGET]),
    ("memory-rep", ["not enough memory"]),
    ("memory-table", ["not enough memory"]),
    ("memory-concat", ["not enough memory"]),
    ("memory-in-pcall", ["memory cap exceeded (33554432 bytes)"]),
    ("memory-churn", [BUDGET + " allocating memory"]),
]

# hostile_fs: CALL-WAY (see the playbook). Reading calls are refused as not readable, the
# others as not writable.
FS_ATTEMPTS = [
    ("read-dotdot", [READ]), ("read-link", [READ]), ("read-final", [READ]),
    ("read-sibling", [READ]), ("write-dotdot", [WRITE]), ("write-link", [WRITE]),
    ("write-sibling", [WRITE]), ("copy_from-final", [READ]), ("copy_to-dotdot", [WRITE]),
    ("move_from-link", [WRITE]), ("move_to-dotdot", [WRITE]), ("remove-dotdot", [WRITE]),
    ("remove-link", [WRITE]), ("mkdir-link", [WRITE]), ("list-link", [READ]),
    ("list-dotdot", [READ]), ("exists-link", [READ]), ("stat-dotdot", [READ]),
    ("check_yaml-final", [READ]), ("disk_usage-link", [READ]), ("disk_files-link", [READ]),
    ("disk_files-dotdot", [READ]), ("disk_gzip-link", [WRITE]), ("disk_move-dotdot", [WRITE]),
    ("sqlite_check-final", [READ]), ("sqlite_backup-dotdot", [READ]),
]

# Processes: argv, shell command lines, shells, signals.
SHELL = "is a shell or runs the command in its arguments; a playbook may start it only when the check lists it in `programs`"
PROC_ATTEMPTS = [
    ("argv-injection", ["argv stayed literal: "]),
    ("argv-command-line", ["cannot start", "no such file or directory"]),
    ("shell-string", ["bad argument #1 to 'run'", "table expected, got string"]),
    ("shell-argv", ["guardian.proc.run: '/bin/sh' (%s) " % os.path.realpath("/bin/sh") + SHELL]),
    ("shell-by-name", ["guardian.proc.run: '", "/bash' " + SHELL]),
    ("shell-through-env", ["guardian.proc.run: '/usr/bin/env' " + SHELL]),
    ("shell-through-symlink", ["/tool' (%s) " % os.path.realpath("/bin/bash") + SHELL]),
    ("program-not-listed", ["guardian.proc.run: '/usr/bin/touch' is not in the check's programs (/usr/bin/printf)"]),
    ("stop-pid-1", ["stop_stale: pid 1 runs ", "a foreign process is never stopped"]),
    ("stop-foreign", ["/sleep, not the service's program", "a foreign process is never stopped"]),
    ("stop-service-itself", ["is the service itself"]),
    ("signal-kill", ["'KILL' is not one of HUP, USR1, USR2, TERM, INT"]),
    ("signal-no-service", ["check 'signal-no-service' names no service (params.service)"]),
]

# A supervised service for the signal attempts: it only sleeps.
SERVICE = "import time\nwhile True:\n    time.sleep(1)\n"


class HostileAttemptsTest(GuardianTestCase):
    """Table-driven: a group of attempts runs in one guardiand, each as a check of its own whose
    file is broken at once; a normal check beside them is broken too and must be healed. While
    they run, the API must keep answering: every phase's computation holds the loop, so this
    measures how long the worst one did."""

    def setUp(self):
        super().setUp()
        self.pwned_before = os.path.lexists(PWNED)
        self.outside = self.path("outside")
        os.makedirs(os.path.join(self.outside, "dir"))
        with open(os.path.join(self.outside, "secret.txt"), "w", encoding="utf-8") as f:
            f.write(SECRET)

    def run_group(self, playbook, attempts, params=None, prepare=None, check_keys=None, **top):
        """Runs `attempts` ((check id, phrases)) with `playbook`; `params` (check id -> dict)
        adds check params, `check_keys` (check id -> dict) keys of the check itself,
        `prepare(check_id, folder)` sets a check's folder up, `top` goes into the config.
        Returns the incidents by check id and the slowest API answer (s)."""
        params = params or {}
        check_keys = check_keys or {}
        checks, apps = [], {}
        for check_id, _ in attempts:
            app, _ = self.make_app_file(check_id)
            folder = os.path.dirname(app)
            os.symlink("../outside", os.path.join(folder, "link"))
            os.symlink("../outside/secret.txt", os.path.join(folder, "secret-link"))
            os.makedirs(folder + "-evil")
            if prepare:
                prepare(check_id, folder)
            apps[check_id] = app
            checks.append(dict(self.check(check_id, app, playbook=playbook, retries=0,
                                          **params.get(check_id, {})),
                               **check_keys.get(check_id, {})))
        normal, _ = self.make_app_file("normal", content=GOOD_CONFIG.replace("8080", "8181"))
        normal_good = read_text(normal)
        checks.append(self.check("normal", normal))
        outside_before = snapshot(self.outside)
        self.write_config(checks, test_playbooks=True,
                          breaker={"max_actions": 1000, "window_ms": 60000}, **top)
        self.start_daemon()
        for check_id in apps:
            self.wait_version(check_id, GOOD_CONFIG)
        self.wait_version("normal", normal_good)

        for app in apps.values():
            write_atomic(app, GARBAGE)
        write_atomic(normal, GARBAGE)
        incidents, slowest = self.wait_all_escalated(set(apps))
        for check_id, expected in attempts:
            with self.subTest(attempt=check_id):
                inc = incidents[check_id]
                step = assert_refused(self, inc, playbook, expected)
                self.assertNotIn("GOT THROUGH", step["message"])
                self.assertNotIn(SECRET.strip(), step["message"], "read from outside the check's paths")
                self.assertEqual(read_or_none(apps[check_id]), GARBAGE, "the playbook changed its file")
                folder = os.path.dirname(apps[check_id])
                self.assertEqual(sorted(os.listdir(folder + "-evil")), [], "wrote beside its folder")
                self.assertFalse(os.path.lexists(os.path.join(folder, "stolen")), "took a file from outside")

        self.assertEqual(snapshot(self.outside), outside_before, "something outside the declared paths changed")
        self.assertFalse(os.path.lexists(PWNED) and not self.pwned_before, "%s was created" % PWNED)
        self.assertTrue(self.daemon.alive())
        for check_id in apps:
            self.wait_held(check_id)
        # The normal check was healed meanwhile, and still is when broken again.
        self.wait_content(normal, normal_good)
        first = self.wait_incident("normal")
        self.assertEqual(first["state"], "resolved", first)
        write_atomic(normal, GARBAGE)
        self.wait_content(normal, normal_good)
        healed = self.wait_incident("normal", newer_than=first["id"])
        self.assertEqual(healed["state"], "resolved", healed)
        self.assertIs(healed["within_target"], True)
        return incidents, slowest

    def wait_all_escalated(self, check_ids, timeout=TIMEOUT_S * 3):
        """Polls GET /v1/incidents until every check in `check_ids` has an escalated incident;
        returns them by check id, and the slowest answer (s). A stuck loop shows as an answer
        that takes long, or none within 30 s."""
        slowest = 0.0
        deadline = time.monotonic() + timeout
        while True:
            start = time.monotonic()
            try:
                r = http_request("GET", "/v1/incidents?limit=1000", socket_path=self.api_socket,
                                 timeout=30)
            except TimeoutError:
                self.fail("the API did not answer within 30 s: guardiand's loop is stuck")
            slowest = max(slowest, time.monotonic() - start)
            self.assertEqual(r.status, 200, r)
            done = {}
            for inc in r.json["incidents"]:
                if inc["check"] in check_ids and inc["state"] == "escalated":
                    done.setdefault(inc["check"], inc)
            if len(done) == len(check_ids):
                return done, slowest
            if time.monotonic() > deadline:
                self.fail("not escalated within %.0f s: %s\n%s" % (
                    timeout, sorted(check_ids - set(done)), self.daemon.log_tail()))
            time.sleep(0.05)

    def test_lua_environment(self):
        bytecode = compile_bytecode("os.execute('touch %s')" % PWNED)

        def prepare(_check_id, folder):
            with open(os.path.join(folder, "evil.luac"), "wb") as f:
                f.write(bytecode)
        # A playbook file of bytecode is refused when the folder is scanned: never installed.
        extra = self.path("playbooks-extra")
        os.makedirs(extra)
        with open(os.path.join(extra, "hostile_bytecode.lua"), "wb") as f:
            f.write(bytecode)
        self.run_group("hostile_attempts", LUA_ATTEMPTS, prepare=prepare,
                       playbook_dirs=[REPO_PLAYBOOKS, TEST_PLAYBOOKS, extra])
        errors = self.api("GET", "/v1/status", expect=200).json["playbook_errors"]
        self.assertTrue([e for e in errors if "hostile_bytecode.lua" in e
                         and "attempt to load a binary chunk (mode is 't')" in e], errors)
        self.stop_daemon()

    def test_budget_and_memory(self):
        _, slowest = self.run_group("hostile_attempts", BUDGET_ATTEMPTS)
        # Nineteen phases that each spend their whole budget, several in the same loop turn: the
        # API waited 2.1 s at most in the release build. Before they were charged, error-in-pcall
        # alone held the loop for 13 s and slow-compare for the 30 s deadline; with Lua's own
        # matcher the patterns never let go.
        self.assertLess(slowest, 10.0, "the API waited that long for the loop")
        self.stop_daemon()

    def test_a_pathological_pattern_does_not_hold_the_loop(self):
        # With Lua's own matcher, each of these ran in C for hours with the loop stuck.
        _, slowest = self.run_group("hostile_attempts", [
            a for a in BUDGET_ATTEMPTS if a[0] in ("pattern-backtrack", "pattern-optional")])
        self.assertLess(slowest, 5.0, "the API waited that long for the loop")
        self.stop_daemon()

    def test_paths_out_of_the_declared_folders(self):
        self.run_group("hostile_fs", FS_ATTEMPTS)
        self.stop_daemon()

    def test_processes_and_signals(self):
        sleeper = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
        self.addCleanup(sleeper.wait)
        self.addCleanup(sleeper.kill)
        script = self.path("svc.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(SERVICE)
        service = {"name": "svc", "argv": [sys.executable, script], "stop_grace_ms": 1000}
        targets = {"stop-pid-1": 1, "stop-foreign": sleeper.pid}

        def prepare(check_id, folder):
            if check_id == "shell-through-symlink":
                os.symlink("/bin/bash", os.path.join(folder, "tool"))
            if check_id in targets:
                pid = targets[check_id]
                with open(os.path.join(folder, "target"), "w", encoding="utf-8") as f:
                    f.write("%d %d\n" % (pid, start_ticks(pid)))
        params = {a[0]: {"service": "svc"} for a in PROC_ATTEMPTS if a[0].startswith(("stop-", "signal-kill"))}
        incidents, _ = self.run_group("hostile_attempts", PROC_ATTEMPTS, params=params, prepare=prepare,
                                      check_keys={"program-not-listed": {"programs": ["/usr/bin/printf"]}},
                                      services=[service])
        # The program got each argument as it was sent, and nothing ran a shell.
        folder = self.path("argv-injection")
        step = self.assert_step(incidents["argv-injection"], "remediate", "failed")
        sent = ["a; touch %s/m1" % folder, "$(touch %s/m2)" % folder, "`touch %s/m3`" % folder,
                "&& touch %s/m4" % folder, "| touch %s/m5" % folder, "> %s/m6" % folder, "x y"]
        self.assertIn("argv stayed literal: " + "".join("[%s]" % a for a in sent), step["message"])
        for check_id in [a[0] for a in PROC_ATTEMPTS if a[0].startswith(("argv-", "shell-", "program-"))]:
            for marker in ("m%d" % i for i in range(1, 14)):
                self.assertFalse(os.path.lexists(self.path(check_id, marker)), "a shell ran: " + marker)
        # Nobody was signalled: pid 1 and the stranger run on, the service is the same process.
        self.assertIsNone(sleeper.poll(), "the unrelated process was stopped")
        self.assertTrue(running(1))
        svc = [s for s in self.api("GET", "/v1/status", expect=200).json["services"] if s["name"] == "svc"][0]
        self.assertEqual(svc["starts"], 1, svc)
        self.assertTrue(running(svc["pid"]))
        self.stop_daemon()


if __name__ == "__main__":
    unittest.main()
