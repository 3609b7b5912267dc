"""guardiand as a process: config validation, SIGHUP reloads, SIGTERM, the state-dir lock, the
CLI without a daemon, and playbooks edited on disk."""

import os
import re
import shutil
import signal
import subprocess
import unittest

from harness import (GOOD_CONFIG, GUARDIAN, GUARDIAND, REPO_PLAYBOOKS, TIMEOUT_S, GuardianTestCase,
                     read_text, write_atomic)

GARBAGE = "server: [port: {{ 8080\n"


class CheckConfigTest(GuardianTestCase):

    def bad_config(self):
        app = self.path("app", "app.yaml")
        # Line numbers matter: the test asserts each error's exact position.
        text = (
            "state_dir: %s\n"                              # 1
            "stat_dir: /tmp/x\n"                           # 2  unknown key (col 1)
            "playbook_dirs: [%s]\n"                        # 3
            "defaults:\n"                                  # 4
            "  interval_ms: fast\n"                        # 5  not an integer (col 16)
            "checks:\n"                                    # 6
            "  - id: app\n"                                # 7
            "    mode: missing_config\n"                   # 8
            "    params: { path: %s }\n"                   # 9
            "  - id: app\n"                                # 10 duplicate id (col 9)
            "    mode: missing_config\n"                   # 11
            "    params: { path: %s }\n"                   # 12
            "  - id: other\n"                              # 13 missing required param (col 5)
            "    mode: missing_config\n"                   # 14
            "    debounce: 0\n"                            # 15 out of range (col 15)
        ) % (self.state_dir, REPO_PLAYBOOKS, app, app)
        path = self.path("bad.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    EXPECTED = [
        (2, 1, "unknown key 'stat_dir'"),
        (5, 16, "defaults.interval_ms: expected an integer"),
        (10, 9, "duplicate check id 'app'"),
        (13, 5, "missing required param 'path'"),
        (15, 15, "checks[2].debounce"),
    ]

    def assert_errors(self, path, stderr):
        lines = [l for l in stderr.splitlines() if l.strip()]
        pattern = re.compile(r"^(.+):(\d+):(\d+): (.+)$")
        found = []
        for line in lines:
            m = pattern.match(line)
            self.assertIsNotNone(m, "not FILE:LINE:COL: message: %r" % line)
            self.assertEqual(m.group(1), path)
            found.append((int(m.group(2)), int(m.group(3)), m.group(4)))
        self.assertEqual([(l, c) for l, c, _ in found], [(l, c) for l, c, _ in self.EXPECTED],
                         "errors (sorted by position):\n" + stderr)
        for (_, _, msg), (_, _, want) in zip(found, self.EXPECTED):
            self.assertIn(want, msg)

    def test_guardiand_check_config_reports_every_error_with_position(self):
        path = self.bad_config()
        r = subprocess.run([GUARDIAND, "--check-config", path], capture_output=True, text=True,
                           timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assert_errors(path, r.stderr)
        self.assertFalse(os.path.exists(self.state_dir), "--check-config must not create the state dir")

    def test_guardian_check_config_matches(self):
        path = self.bad_config()
        r = subprocess.run([GUARDIAN, "check-config", path], capture_output=True, text=True, timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assert_errors(path, r.stderr)

    def test_unknown_playbook_is_reported_at_its_check(self):
        app, _ = self.make_app_file()
        path = self.write_config([self.check("app", app), self.check("other", app, playbook="no_such_playbook")])
        lines = read_text(path).splitlines()
        check_line = next(i + 1 for i, l in enumerate(lines) if '"other"' in l)
        r = subprocess.run([GUARDIAND, "--check-config", path], capture_output=True, text=True,
                           timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertRegex(r.stderr, r"(?m)^%s:%d:\d+: .*playbook 'no_such_playbook' not found"
                         % (re.escape(path), check_line))

    def test_good_config_exits_0(self):
        app, _ = self.make_app_file()
        path = self.write_config([self.check("app", app)])
        r = subprocess.run([GUARDIAND, "--check-config", path], capture_output=True, text=True,
                           timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        self.assertIn("ok", r.stdout)
        r = subprocess.run([GUARDIAN, "check-config", path], capture_output=True, text=True, timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_daemon_refuses_to_start_on_a_bad_config(self):
        path = self.bad_config()
        d = self.start_daemon(path, wait_ready=False)
        rc = d.proc.wait(timeout=TIMEOUT_S)
        self.assertEqual(rc, 2, d.log())
        self.assertIn("unknown key 'stat_dir'", d.log())


class DaemonTest(GuardianTestCase):

    def start_one(self):
        self.app, _ = self.make_app_file("app")
        self.write_config([self.check("app", self.app)])
        self.start_daemon()
        self.wait_version("app", GOOD_CONFIG)

    def break_and_heal(self, check_id, path, good=GOOD_CONFIG, newer_than=0):
        write_atomic(path, GARBAGE)
        self.wait_content(path, good)
        inc = self.wait_incident(check_id, newer_than=newer_than)
        self.assertEqual(inc["state"], "resolved", inc)
        return inc

    def test_sigterm_exits_cleanly(self):
        self.start_one()
        self.stop_daemon()
        log = read_text(self.daemons[0].log_path)
        self.assertIn("stopping", log)
        # It can start again on the same state dir after a clean stop.
        self.start_daemon()
        self.stop_daemon()

    def test_sighup_with_broken_config_keeps_old_config(self):
        self.start_one()
        with open(self.config_path, "a") as f:
            f.write("bogus_key: 1\nchecks: [ unterminated\n")
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.wait_log("reload rejected")
        self.assertTrue(self.daemon.alive())
        # The old config still heals.
        inc = self.break_and_heal("app", self.app)
        self.assertIs(inc["within_target"], True)
        self.assertNotIn("reloaded:", self.daemon.log())
        self.stop_daemon()

    def test_sighup_with_invalid_check_keeps_old_config(self):
        # Parses as YAML but fails validation (unknown mode): rejected as a whole.
        self.start_one()
        text = read_text(self.config_path) + "  - id: extra\n    mode: not_a_mode\n"
        write_atomic(self.config_path, text)
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.wait_log("reload rejected")
        self.break_and_heal("app", self.app)
        st = self.status_json()
        self.assertEqual([c["id"] for c in st["checks"]], ["app"])
        self.stop_daemon()

    def test_sighup_adds_a_check_that_heals(self):
        self.start_one()
        app2, _ = self.make_app_file("app2", content=GOOD_CONFIG.replace("8080", "8181"))
        good2 = read_text(app2)
        self.write_config([self.check("app", self.app), self.check("app2", app2)])
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.wait_log("reloaded: 2 checks")
        self.wait_version("app2", good2)
        self.wait_for(lambda: {c["id"] for c in self.status_json()["checks"]} == {"app", "app2"},
                      what="status.json to list both checks")
        inc = self.break_and_heal("app2", app2, good=good2)
        self.assertEqual(inc["check"], "app2")
        # The first check kept running untouched and still heals.
        self.break_and_heal("app", self.app)
        self.assertNotIn("check app: changed", self.daemon.log())
        self.stop_daemon()

    def start_slow_incident(self):
        self.app, _ = self.make_app_file("app")
        self.write_config([self.check("app", self.app, playbook="slow_restore")], test_playbooks=True)
        self.start_daemon()
        self.wait_version("app", GOOD_CONFIG)
        write_atomic(self.app, GARBAGE)
        inc_id = self.wait_for(lambda: [i["id"] for i in self.incidents("app")], what="an incident")[0]
        self.wait_for(lambda: any(s["phase"] == "remediate" and s["status"] == "running"
                                  for s in self.incident(inc_id)["steps"]), what="remediate to run")
        return inc_id

    def test_sighup_changing_a_check_mid_incident(self):
        # The check is restarted with its new definition; its running incident carries on.
        inc_id = self.start_slow_incident()
        check = self.check("app", self.app, playbook="slow_restore")
        check["interval_ms"] = 300
        self.write_config([check], test_playbooks=True)
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.wait_log("check app: changed; restarting it")
        self.wait_content(self.app, GOOD_CONFIG)
        inc = self.wait_incident("app")
        self.assertEqual(inc["id"], inc_id)
        self.assertEqual(inc["state"], "resolved", inc)
        self.assertEqual(len(self.incidents("app")), 1, "the restarted check did not open a second incident")
        # And the restarted check heals the next fault.
        self.break_and_heal("app", self.app, newer_than=inc_id)
        self.stop_daemon()

    def test_sighup_removing_a_check_mid_incident(self):
        inc_id = self.start_slow_incident()
        other, _ = self.make_app_file("other")
        self.write_config([self.check("other", other)], test_playbooks=True)
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.wait_log("check app: removed")
        inc = self.wait_incident("app", timeout=20)
        self.assertEqual(inc["id"], inc_id)
        self.assertIn(inc["state"], ("resolved", "escalated"), inc)
        if inc["state"] == "escalated":
            self.assertIn("no longer configured", inc["reason"])
        self.assert_no_running_steps(self.incident(inc_id))
        self.wait_version("other", GOOD_CONFIG)
        self.break_and_heal("other", other)
        self.stop_daemon()

    def test_second_daemon_on_same_state_dir_refuses(self):
        self.start_one()
        first = self.daemon
        second = self.start_daemon(wait_ready=False)
        try:
            rc = second.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.fail("a second guardiand on the same state_dir kept running; log:\n" + second.log())
        self.assertNotEqual(rc, 0)
        self.assertIn("another guardiand", second.log())
        self.assertTrue(first.alive())
        self.assertEqual(self.status_json()["pid"], first.pid)
        # The first one still works and still owns its lock.
        self.break_and_heal("app", self.app)
        self.stop_daemon(first)

    def test_cli_without_store_exits_3_with_hint(self):
        empty = self.path("nothing-here")
        for cmd in (["incidents"], ["incident", "1"], ["status"]):
            with self.subTest(cmd=cmd):
                r = self.run_cli(*cmd, "--json", state_dir=empty)
                self.assertEqual(r.returncode, 3, r.stderr)
                self.assertIn("guardiand --config", r.stderr)
                self.assertEqual(r.stdout, "")

    def test_status_after_a_clean_stop_says_no_daemon(self):
        self.start_one()
        self.stop_daemon()
        r = self.run_cli("status", "--json")
        self.assertEqual(r.returncode, 3, r.stdout)
        self.assertIn("guardiand --config", r.stderr)
        # The store outlives the daemon: incidents stay readable.
        self.assertEqual(self.incidents(), [])

    def test_status_after_the_daemon_was_killed_says_so(self):
        # DESIGN.md: the CLI finds the daemon, and "when none answers it says so and how to
        # start one". After guardiand dies without cleaning up (SIGKILL, OOM kill, crash) its
        # status.json is stale; the CLI sees that no daemon holds guardiand.lock.
        self.start_one()
        pid = self.daemon.pid
        self.kill_daemon()
        r = self.run_cli("status", "--json")
        self.assertNotIn('"pid": %d' % pid, r.stdout)
        self.assertEqual(r.returncode, 3, r.stdout)
        self.assertIn("guardiand --config", r.stderr)

    def test_cli_unknown_incident(self):
        self.start_one()
        r = self.run_cli("incident", "999", "--json")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no incident 999", r.stderr)
        self.stop_daemon()

    def test_playbook_syntax_error_in_a_long_path_names_file_and_line(self):
        # Lua shortens chunk names to LUA_IDSIZE (60) characters; playbooks are loaded under
        # their file name and errors get the full path back, so a deep path still reads
        # "FILE:LINE:".
        pb_dir = self.path("a-long-folder-name-so-the-playbook-path-exceeds-lua-idsize", "playbooks")
        os.makedirs(pb_dir)
        pb = os.path.join(pb_dir, "missing_config.lua")
        self.assertGreater(len(pb), 60)
        lines = read_text(os.path.join(REPO_PLAYBOOKS, "missing_config.lua")).splitlines(keepends=True)
        with open(pb, "w") as f:
            f.write("".join(lines[:11]) + "local broken = = 1\n" + "".join(lines[11:]))
        r = subprocess.run([GUARDIAN, "playbook", "lint", pb], capture_output=True, text=True, timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertRegex(r.stderr, r"(?m)^%s:12: " % re.escape(pb))

    def test_playbook_edited_into_syntax_error_keeps_previous_version(self):
        pb_dir = self.path("playbooks")
        os.makedirs(pb_dir)
        pb = os.path.join(pb_dir, "missing_config.lua")
        shutil.copy(os.path.join(REPO_PLAYBOOKS, "missing_config.lua"), pb)
        self.app, _ = self.make_app_file("app")
        self.write_config([self.check("app", self.app)], playbook_dirs=[pb_dir])
        self.start_daemon()
        self.wait_version("app", GOOD_CONFIG)

        original = read_text(pb)
        lines = original.splitlines(keepends=True)
        bad_line = 12
        broken = "".join(lines[:bad_line - 1]) + "local broken = = 1\n" + "".join(lines[bad_line - 1:])
        write_atomic(pb, broken)
        needle = re.compile(r"playbook reload: %s:%d: .*previous version stays in use" % (re.escape(pb), bad_line))
        self.wait_for(lambda: needle.search(self.daemon.log()), what="the playbook syntax error in the log")

        inc = self.incident(self.break_and_heal("app", self.app)["id"])
        self.assertIn("last-known-good", self.assert_step(inc, "remediate")["message"])

        # A valid edit is picked up: the next incident runs the new version.
        fixed = original.replace('"the last-known-good copy"', '"the edited playbook\'s copy"')
        self.assertNotEqual(fixed, original)
        write_atomic(pb, fixed)
        self.assertTrue(self.daemon.alive())

        def new_version_used():
            last = self.incidents("app")[0]["id"]
            inc = self.incident(self.break_and_heal("app", self.app, newer_than=last)["id"])
            return "the edited playbook's copy" in self.assert_step(inc, "remediate")["message"]
        # The rescan runs ~100 ms after the write; an incident that raced it may still use the
        # old version, so allow a few rounds.
        self.wait_for(new_version_used, timeout=20, what="the edited playbook to be used")
        self.stop_daemon()


if __name__ == "__main__":
    unittest.main()
