"""missing_config on the real demo stack: the app's own app.yaml deleted, emptied, made
unparsable, stripped of a key, or given a value of the wrong type. Guardian keeps the broken copy
aside, restores the last known-good version, has the app reload it (SIGHUP; the app's status file
confirms), and the incident shows what changed as a diff; the app keeps serving throughout."""

import json
import os
import time
import unittest

from harness import LONG_TIMEOUT_S, TIMEOUT_S
from stack import StackTestCase


class MissingConfigOnStackTest(StackTestCase):
    def check(self):
        app = os.path.join(self.stack, "app")
        return {"id": "app-config", "mode": "missing_config", "interval_ms": 300,
                "params": {"service": "app", "path": os.path.join(app, "app.yaml"),
                           "required_keys": ["server.port:int", "database.path:string"],
                           "defaults_file": os.path.join(app, "app.defaults.yaml")}}

    def heal(self, kind, extra=""):
        path = os.path.join(self.stack, "app", "app.yaml")
        if extra:
            with open(path, "a", encoding="utf-8") as f:
                f.write(extra)
        self.start_stack([self.check()])
        # A last-known-good version exists once the check has seen the file valid.
        versions = os.path.join(self.state_dir, "checks", "app-config", "versions")
        self.wait_for(lambda: os.path.isdir(versions) and os.listdir(versions), TIMEOUT_S,
                      "a last-known-good version")
        with open(path, encoding="utf-8") as f:
            good = f.read()
        before = self.app_get("/items")
        fault = self.inject("missing_config", "--kind", kind)
        inc = self.wait_incident("app-config", timeout=LONG_TIMEOUT_S)
        self.assertTrue(inc["within_target"], inc)
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), good)
        remediate = [s for s in inc["steps"] if s["phase"] == "remediate"][-1]["message"]
        self.assertIn("restored the last-known-good copy", remediate)
        self.assertIn("the service reloaded it", remediate)
        # The app says it loaded the file after the fault.
        st = self.app_get("/status")
        self.assertGreaterEqual(st["config"]["loaded_at"], fault["onset_at"])
        self.assertIsNone(st["config"]["error"])
        self.assertEqual(self.app_get("/items"), before)
        backup = [s for s in inc["steps"] if s["phase"] == "backup"][-1]["message"]
        return inc, remediate, backup

    def test_wrong_type_is_caught_and_the_diff_shows_it(self):
        inc, remediate, backup = self.heal("wrong-type")
        self.assertIn("key 'server.port' must be an integer, got 'eighty'", inc["evidence"])
        self.assertIn("--- broken", remediate)
        self.assertIn("+++ restored", remediate)
        self.assertIn('-  port: "eighty"', remediate)
        self.assertIn("kept the broken file as", backup)

    def test_deleted_file(self):
        inc, remediate, backup = self.heal("delete")
        self.assertIn("(the file was missing)", remediate)
        self.assertIn("nothing to keep aside", backup)

    def test_unparsable_file_and_no_secret_in_the_diff(self):
        # The app ignores keys it does not know; a secret in the file must not reach the store.
        inc, remediate, _ = self.heal("garbage", extra="admin_password: hunter2-secret\n")
        self.assertIn("YAML error", inc["evidence"])
        self.assertIn("-server: [unclosed", remediate)
        self.assertIn("+admin_password: ***", remediate)
        self.assertNotIn("hunter2-secret", json.dumps(inc))


if __name__ == "__main__":
    unittest.main()
