"""invalid_credentials on the real demo stack: the app calls its primary upstream with a bearer
token from a token file that Guardian keeps; the primary checks tokens against a real OAuth2-style
auth server (chaos/stack/upstream auth). The injector expires, revokes or rotates credentials at
that server for real; Guardian refreshes once, else switches to the backup key, else degrades the
app's quotes and escalates, and tries again as soon as an operator changes a key file. No token
or secret may appear in guardiand's log, its state (store included) or its API."""

import glob
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request

from harness import LONG_TIMEOUT_S, SOURCE, TIMEOUT_S
from stack import StackTestCase, free_port

UPSTREAM = os.path.join(SOURCE, "chaos", "stack", "upstream")


class InvalidCredentialsTest(StackTestCase):
    def setUp(self):
        super().setUp()
        self.secrets_dir = os.path.join(self.stack, "secrets")
        self.token_file = os.path.join(self.secrets_dir, "token.json")
        self.seen = set()  # every token and secret this test saw; none may leak

    def key_file(self, n):
        return os.path.join(self.secrets_dir, ("app-primary.key", "app-backup.key")[n - 1])

    def remember_secrets(self):
        for n in (1, 2):
            with open(self.key_file(n)) as f:
                self.seen.add(json.load(f)["client_secret"])
        if os.path.exists(self.token_file):
            with open(self.token_file) as f:
                t = json.load(f)
            self.seen.update(v for k, v in t.items() if k in ("access_token", "refresh_token"))

    def start(self):
        self.pa, self.p1, self.p2 = free_port(), free_port(), free_port()
        path = os.path.join(self.stack, "app", "app.yaml")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(":9101", ":%d" % self.p1).replace(":9102", ":%d" % self.p2))
        auth_url = "http://127.0.0.1:%d" % self.pa
        services = [
            self.app_service(),
            {"name": "auth", "cwd": self.stack, "port": {"preferred": self.pa},
             "argv": [sys.executable, UPSTREAM, "auth", "--port", str(self.pa), "--clients",
                      os.path.join(self.secrets_dir, "clients.json"), "--ttl-s", "3600"]},
        ]
        for name, port in (("primary", self.p1), ("backup", self.p2)):
            services.append({"name": name, "cwd": self.stack, "port": {"preferred": port},
                             "argv": [sys.executable, UPSTREAM, "api", "--port", str(port),
                                      "--name", name, "--auth-url", auth_url]})
        check = {"id": "app-auth", "mode": "invalid_credentials", "interval_ms": 200,
                 "params": {"service": "app", "token_file": self.token_file,
                            "token_url": auth_url + "/oauth/token",
                            "probe_url": auth_url + "/v1/whoami",
                            "key_files": [self.key_file(1), self.key_file(2)],
                            "expiry_margin_s": 60, "feature": "quotes"}}
        self.write_config([check], services=services,
                          port_registry=os.path.join(self.stack, "run", "ports.json"))
        self.start_daemon()
        for name in ("app", "auth", "primary", "backup"):
            self.wait_for(lambda: self.service(name).get("state") == "ready", TIMEOUT_S,
                          name + " ready")
        # No token yet: Guardian's first incident gets one with the primary key.
        first = self.wait_incident("app-auth", timeout=LONG_TIMEOUT_S)
        remediate = self.step_message(first, "remediate")
        self.assertIn("grant with key 1: client 'app' has a new token", remediate)
        self.wait_for(lambda: self.check("app-auth")["state"] == "ok",
                      TIMEOUT_S, "app-auth ok")
        self.assertEqual(self.quote()["served_by"], "primary")
        self.remember_secrets()
        return first["id"]

    def check(self, check_id):
        """The check as GET /v1/status shows it now."""
        st = self.api("GET", "/v1/status", expect=200).json
        return [c for c in st["checks"] if c["id"] == check_id][0]

    def step_message(self, inc, phase):
        return [s for s in inc["steps"] if s["phase"] == phase][-1]["message"]

    def quote(self):
        return self.app_get("/quote?item=3")

    def quote_error(self):
        try:
            self.quote()
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
        self.fail("the quote was served")

    def flags(self):
        """The app's flags as Guardian wrote them; {} when it never did."""
        path = os.path.join(self.stack, "run", "flags.json")
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def assert_no_secret_leaked(self):
        self.remember_secrets()
        self.assertTrue(self.seen)
        places = {"guardiand log": self.all_logs()}
        for path in glob.glob(os.path.join(self.state_dir, "**"), recursive=True):
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    places[path] = f.read().decode("latin-1")
        places["GET /v1/status"] = self.api("GET", "/v1/status", expect=200).text
        places["GET /metrics"] = self.api("GET", "/metrics", expect=200).text
        for inc in self.incidents("app-auth"):
            places["incident %d" % inc["id"]] = json.dumps(self.incident(inc["id"]))
        for where, text in places.items():
            for secret in self.seen:
                self.assertNotIn(secret, text, "a token or secret leaked into " + where)

    def test_expired_token_is_refreshed_once(self):
        baseline = self.start()
        self.inject("invalid_credentials", "--kind", "expire")
        inc = self.wait_incident("app-auth", after=baseline, timeout=LONG_TIMEOUT_S)
        self.assertTrue(inc["within_target"], inc)
        self.assertIn("refuses the token of client 'app'", inc["evidence"])
        self.assertIn("refresh: client 'app' has a new token", self.step_message(inc, "remediate"))
        self.assertEqual(self.quote()["served_by"], "primary")
        self.assert_no_secret_leaked()

    def test_revoked_refresh_switches_to_the_backup_key(self):
        baseline = self.start()
        self.inject("invalid_credentials", "--kind", "revoke")
        inc = self.wait_incident("app-auth", after=baseline, timeout=LONG_TIMEOUT_S)
        self.assertTrue(inc["within_target"], inc)
        remediate = self.step_message(inc, "remediate")
        self.assertIn("refresh: 400 invalid_grant", remediate)
        self.assertIn("switched keys: grant with key 2: client 'app-backup' has a new token",
                      remediate)
        self.assertEqual(self.quote()["served_by"], "primary")
        with open(self.token_file) as f:
            self.assertEqual(json.load(f)["client_id"], "app-backup")
        self.assertEqual(os.stat(self.token_file).st_mode & 0o777, 0o600)
        self.assert_no_secret_leaked()

    def test_lockout_degrades_then_new_credentials_heal_without_a_human_release(self):
        baseline = self.start()
        self.inject("invalid_credentials", "--kind", "lockout")
        inc = self.wait_incident("app-auth", state="escalated", after=baseline,
                                 timeout=LONG_TIMEOUT_S)
        remediate = [s for s in inc["steps"] if s["phase"] == "remediate"]
        self.assertEqual(len(remediate), 1, "tried once, no loop: %s" % inc)
        self.assertIn("ALERT: no credentials work", remediate[0]["message"])
        self.assertIn("401 invalid_client", remediate[0]["message"])
        self.assertIn("quotes", self.flags()["degraded_features"])
        code, body = self.quote_error()
        self.assertEqual((code, body["error"]), (503, "feature degraded: quotes"))
        self.assertTrue(self.check("app-auth")["held"])
        # Nothing changes: no new attempt (the check stays held, one incident).
        self.wait_for(lambda: self.check("app-auth")["gauges"].get("degraded") == 1,
                      TIMEOUT_S, "degraded gauge")
        self.assertEqual(len([i for i in self.incidents("app-auth") if i["id"] > baseline]), 1)

        # An operator issues a new secret for the primary client and puts it in its key file.
        new_secret = secrets.token_urlsafe(24)
        self.seen.add(new_secret)
        req = urllib.request.Request(
            "http://127.0.0.1:%d/control/secret" % self.pa, method="POST",
            data=json.dumps({"client_id": "app", "secret": new_secret}).encode(),
            headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).read()
        with open(self.key_file(1) + ".new", "w") as f:
            json.dump({"client_id": "app", "client_secret": new_secret}, f)
        os.chmod(self.key_file(1) + ".new", 0o600)
        os.rename(self.key_file(1) + ".new", self.key_file(1))

        healed = self.wait_incident("app-auth", after=inc["id"], timeout=LONG_TIMEOUT_S)
        remediate = self.step_message(healed, "remediate")
        self.assertIn("grant with key 1: client 'app' has a new token", remediate)
        self.assertIn("'quotes' re-enabled", remediate)
        self.assertNotIn("quotes", self.flags().get("degraded_features", []))
        self.assertEqual(self.quote()["served_by"], "primary")
        self.assertFalse(self.check("app-auth")["held"])
        self.assert_no_secret_leaked()

    def test_no_answer_is_not_refused_and_the_hold_lifts_when_the_endpoint_answers(self):
        # The token endpoint is a port nobody listens on yet (not a supervised service, so not
        # "still starting"), and there is no token: every grant gets no answer.
        pa = free_port()
        auth_url = "http://127.0.0.1:%d" % pa
        check = {"id": "app-auth", "mode": "invalid_credentials", "interval_ms": 200,
                 "params": {"service": "app", "token_file": self.token_file,
                            "token_url": auth_url + "/oauth/token",
                            "probe_url": auth_url + "/v1/whoami",
                            "key_files": [self.key_file(1), self.key_file(2)],
                            "feature": "quotes"}}
        self.write_config([check], services=[self.app_service()],
                          port_registry=os.path.join(self.stack, "run", "ports.json"))
        self.start_daemon()
        inc = self.wait_incident("app-auth", state="escalated", timeout=LONG_TIMEOUT_S)
        remediate = [s for s in inc["steps"] if s["phase"] == "remediate"]
        self.assertEqual(len(remediate), 1, "tried once, no loop: %s" % inc)
        self.assertIn("the token endpoint gave no answer", remediate[0]["message"])
        self.assertIn("no answer: refused", remediate[0]["message"])
        # Unreachable is not refused: nothing degraded, no alert.
        self.assertNotIn("quotes", self.flags().get("degraded_features", []))
        self.assertNotIn("ALERT", self.all_logs())
        self.assertTrue(self.check("app-auth")["held"])
        # The auth server comes up: the hold lifts by itself and a token is granted.
        auth = subprocess.Popen([sys.executable, UPSTREAM, "auth", "--port", str(pa), "--clients",
                                 os.path.join(self.secrets_dir, "clients.json"), "--ttl-s", "3600"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(auth.wait)
        self.addCleanup(auth.kill)
        healed = self.wait_incident("app-auth", after=inc["id"], timeout=LONG_TIMEOUT_S)
        self.assertIn("grant with key 1: client 'app' has a new token",
                      self.step_message(healed, "remediate"))
        self.assertFalse(self.check("app-auth")["held"])
        db = sqlite3.connect(os.path.join(self.state_dir, "guardian.db"))
        try:
            lifted = [d for (d,) in db.execute(
                "SELECT detail FROM events WHERE kind = 'release' AND check_id = 'app-auth'")]
        finally:
            db.close()
        self.assertTrue(any("/oauth/token answers again" in d for d in lifted), lifted)
        self.assert_no_secret_leaked()


if __name__ == "__main__":
    import unittest
    unittest.main()
