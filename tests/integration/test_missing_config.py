"""missing_config end to end: a real watched YAML file is broken four ways and guardiand must
bring back the last good content, with a complete, within-target incident record."""

import os
import unittest

from harness import GOOD_CONFIG, GuardianTestCase, read_or_none, read_text, write_atomic

NEWER_GOOD = "server:\n  port: 9090\n  host: 0.0.0.0\nname: demo\nworkers: 4\n"
DEFAULTS = "server:\n  port: 1\n# written by guardian: defaults\n"
BAK = "server:\n  port: 2\n# the operator's .bak\n"

GARBAGE = "server: [port: {{ 8080\n\t- : : :\n"
MISSING_KEY = "server:\n  host: 127.0.0.1\nname: demo\n"


class MissingConfigTest(GuardianTestCase):

    def start_watching(self):
        self.app, self.defaults = self.make_app_file(defaults=DEFAULTS)
        self.write_config([self.check("app", self.app, defaults_file=self.defaults)])
        self.start_daemon()
        self.wait_version("app", GOOD_CONFIG)
        # A newer good content: the restore must pick the newest kept version, not the first.
        write_atomic(self.app, NEWER_GOOD)
        self.wait_version("app", NEWER_GOOD)

    def assert_healed(self, fault, broken):
        """Injects the fault, waits for the file to come back and checks the incident record."""
        if broken is None:
            os.remove(self.app)
        else:
            write_atomic(self.app, broken)
        self.wait_content(self.app, NEWER_GOOD)
        summary = self.wait_incident("app")
        self.assertEqual(len(self.incidents("app")), 1, "one fault, one incident")
        inc = self.incident(summary["id"])

        self.assertEqual(inc["state"], "resolved", inc)
        self.assertEqual(inc["mode"], "missing_config")
        self.assertEqual(inc["check"], "app")
        self.assertEqual(inc["playbook"], "missing_config")
        for key in ("mttd_ms", "mttr_ms"):
            self.assertIsInstance(inc[key], int, key)
            self.assertNotIsInstance(inc[key], bool, key)
            self.assertGreaterEqual(inc[key], 0, key)
        self.assertLessEqual(inc["mttd_ms"], inc["mttr_ms"])
        self.assertEqual(inc["target_ms"], 10000)
        self.assertIs(inc["within_target"], True)
        self.assertEqual(inc["attempts"], 1)
        self.assertIsNotNone(inc["recovered_at"])
        self.assertEqual(inc["recovered_at"] - inc["onset_at"], inc["mttr_ms"])
        for phase in ("backup", "remediate", "verify", "probe"):
            self.assert_step(inc, phase, "ok", attempt=1)
        self.assert_no_running_steps(inc)
        self.assertFalse([s for s in inc["steps"] if s["phase"] == "rollback"], inc)
        remediate = self.assert_step(inc, "remediate")
        self.assertIn("last-known-good", remediate["message"])
        # The summary in `incidents` and the full record agree.
        self.assertEqual(summary["id"], inc["id"])
        self.assertEqual(summary["mttr_ms"], inc["mttr_ms"])

        self.assertEqual(read_text(self.app), NEWER_GOOD)
        aside_dir = os.path.join(self.state_dir, "checks", "app", "aside")
        aside = os.path.join(aside_dir, "incident-%d-attempt-1.yaml" % inc["id"])
        if broken is None:
            self.assertFalse(os.path.exists(aside), "nothing to keep aside for a deleted file")
            self.assertIn("missing", self.assert_step(inc, "backup")["message"])
        else:
            self.assertEqual(read_or_none(aside), broken, "the broken file kept aside as it was")
            self.assertIn(aside, self.assert_step(inc, "backup")["message"])
        # Still healthy afterwards, and the daemon stops cleanly.
        self.wait_for(lambda: (self.check_status("app") or {}).get("state") == "ok", what="check app ok")
        self.assertFalse((self.check_status("app") or {}).get("held"))
        self.stop_daemon()

    def test_deleted_file_is_restored(self):
        self.start_watching()
        self.assert_healed("delete", None)

    def test_emptied_file_is_restored(self):
        self.start_watching()
        self.assert_healed("empty", "")

    def test_unparsable_file_is_restored(self):
        self.start_watching()
        self.assert_healed("garbage", GARBAGE)

    def test_file_missing_required_key_is_restored(self):
        self.start_watching()
        self.assert_healed("missing-key", MISSING_KEY)

    def test_repeated_faults_each_get_an_incident(self):
        self.start_watching()
        last = 0
        for broken in (None, "", GARBAGE, MISSING_KEY):
            with self.subTest(broken=broken):
                if broken is None:
                    os.remove(self.app)
                else:
                    write_atomic(self.app, broken)
                self.wait_content(self.app, NEWER_GOOD)
                inc = self.wait_incident("app", newer_than=last)
                self.assertEqual(inc["state"], "resolved")
                self.assertIs(inc["within_target"], True)
                last = inc["id"]
        self.assertEqual(len(self.incidents("app")), 4)
        self.stop_daemon()

    def test_torn_version_left_by_a_crash_is_not_restored(self):
        # The detector keeps a version by writing <ts>.yaml.tmp and renaming it to <ts>.yaml; a
        # crash between the two leaves the .tmp behind, possibly cut short. Simulate that
        # leftover (a torn copy that still parses and has server.port), then break the file: the
        # restore must use the last complete version.
        # guardian.state.versions() lists only finished *.yaml copies, never a "<ts>.yaml.tmp".
        self.start_watching()
        folder = self.versions_dir("app")
        newest = sorted(n for n in os.listdir(folder) if n.endswith(".yaml"))[-1]
        torn = NEWER_GOOD[:NEWER_GOOD.index("  host")]  # "server:\n  port: 9090\n"
        with open(os.path.join(folder, newest + ".tmp"), "w") as f:
            f.write(torn)
        write_atomic(self.app, GARBAGE)
        self.wait_incident("app")
        self.assertEqual(read_text(self.app), NEWER_GOOD)
        self.stop_daemon()

    def test_defaults_written_when_no_good_version_exists(self):
        self.app, self.defaults = self.make_app_file(content=GARBAGE, defaults=DEFAULTS)
        self.write_config([self.check("app", self.app, defaults_file=self.defaults)])
        self.start_daemon()
        self.wait_content(self.app, DEFAULTS)
        inc = self.incident(self.wait_incident("app")["id"])
        self.assertEqual(inc["state"], "resolved", inc)
        self.assertIn("defaults", self.assert_step(inc, "remediate")["message"])
        self.assert_step(inc, "verify")
        self.assert_step(inc, "probe")
        aside = os.path.join(self.state_dir, "checks", "app", "aside", "incident-%d-attempt-1.yaml" % inc["id"])
        self.assertEqual(read_or_none(aside), GARBAGE)
        self.assertEqual(read_text(self.defaults), DEFAULTS, "the defaults file itself is untouched")
        self.stop_daemon()

    def test_deleted_file_with_no_good_version_gets_defaults(self):
        self.app, self.defaults = self.make_app_file(content=None, defaults=DEFAULTS)
        self.write_config([self.check("app", self.app, defaults_file=self.defaults)])
        self.start_daemon()
        self.wait_content(self.app, DEFAULTS)
        inc = self.incident(self.wait_incident("app")["id"])
        self.assertEqual(inc["state"], "resolved", inc)
        self.stop_daemon()

    def test_bak_preferred_over_defaults(self):
        self.app, self.defaults = self.make_app_file(content=MISSING_KEY, defaults=DEFAULTS, bak=BAK)
        self.write_config([self.check("app", self.app, defaults_file=self.defaults)])
        self.start_daemon()
        self.wait_content(self.app, BAK)
        inc = self.incident(self.wait_incident("app")["id"])
        self.assertEqual(inc["state"], "resolved", inc)
        self.assertIn(".bak", self.assert_step(inc, "remediate")["message"])
        self.assertEqual(read_text(self.app + ".bak"), BAK, "the .bak itself is untouched")
        self.stop_daemon()

    def test_invalid_bak_falls_back_to_defaults(self):
        self.app, self.defaults = self.make_app_file(content="", defaults=DEFAULTS, bak=MISSING_KEY)
        self.write_config([self.check("app", self.app, defaults_file=self.defaults)])
        self.start_daemon()
        self.wait_content(self.app, DEFAULTS)
        inc = self.incident(self.wait_incident("app")["id"])
        self.assertEqual(inc["state"], "resolved", inc)
        self.stop_daemon()

    def test_action_budget_spent_escalates(self):
        # budget max_actions 2: the third fault in the window is not acted on.
        self.app, self.defaults = self.make_app_file(defaults=DEFAULTS)
        check = self.check("app", self.app, defaults_file=self.defaults)
        check["budget"] = {"max_actions": 2}
        self.write_config([check])
        self.start_daemon()
        self.wait_version("app", GOOD_CONFIG)
        last = 0
        for _ in range(2):
            os.remove(self.app)
            self.wait_content(self.app, GOOD_CONFIG)
            last = self.wait_incident("app", newer_than=last)["id"]
        os.remove(self.app)
        inc = self.incident(self.wait_incident("app", newer_than=last)["id"])
        self.assertEqual(inc["state"], "escalated", inc)
        self.assertIn("action budget spent", inc["reason"])
        self.assertFalse([s for s in inc["steps"] if s["phase"] == "remediate"], inc)
        self.wait_held("app")
        self.assertFalse(os.path.exists(self.app), "no action beyond the budget")
        self.stop_daemon()

    def test_nothing_to_restore_escalates_and_holds(self):
        # No kept version, no .bak, no defaults_file: the playbook cannot heal; after its retries
        # the incident is escalated, the check held, and the broken file left as the user had it.
        self.app, _ = self.make_app_file(content=GARBAGE)
        self.write_config([self.check("app", self.app, retries=1)])
        self.start_daemon()
        inc = self.incident(self.wait_incident("app")["id"])
        self.assertEqual(inc["state"], "escalated", inc)
        self.assertEqual(inc["attempts"], 2)
        self.assertIsNone(inc["mttr_ms"])
        self.assertIsNone(inc["within_target"])
        self.assertIn("nothing valid to restore", inc["reason"])
        self.assert_step(inc, "remediate", "failed", attempt=1)
        self.assert_step(inc, "remediate", "failed", attempt=2)
        self.assert_step(inc, "rollback", "ok", attempt=2)
        self.assert_no_running_steps(inc)
        self.wait_held("app")
        self.assertEqual(read_text(self.app), GARBAGE, "rollback put the user's file back")
        # An operator fixing the file by hand lifts the automatic hold.
        write_atomic(self.app, GOOD_CONFIG)
        self.wait_for(lambda: (self.check_status("app") or {}).get("held") is False, what="hold lifted")
        self.stop_daemon()


if __name__ == "__main__":
    unittest.main()
