"""model_server_down on the real demo stack: the app's /generate calls a model server speaking
Ollama's API (chaos/stack/upstream model), supervised by guardiand as service `model`. The server
hangs, errors or is killed for real; Guardian restarts it and waits for /api/tags and a one-token
generate; a server that cannot come back gets the app's model feature degraded, and re-enabled
by itself once the server answers again."""

import json
import os
import sys
import urllib.error
import urllib.request

from harness import LONG_TIMEOUT_S, SOURCE, TIMEOUT_S
from stack import StackTestCase, free_port

UPSTREAM = os.path.join(SOURCE, "chaos", "stack", "upstream")


class ModelServerDownTest(StackTestCase):
    def start(self, restart=None, broken_flag=None):
        self.pm = free_port()
        path = os.path.join(self.stack, "app", "app.yaml")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(":11434", ":%d" % self.pm))
        argv = [sys.executable, UPSTREAM, "model", "--port", str(self.pm),
                "--models", "llama3.2:1b"]
        if broken_flag:
            # A server that cannot start while the flag file exists (argv, no shell).
            argv = [sys.executable, "-c",
                    "import os, sys; os.path.exists(sys.argv[1]) and sys.exit(3); "
                    "os.execv(sys.argv[2], sys.argv[2:])", broken_flag] + argv
        model = {"name": "model", "argv": argv, "cwd": self.stack,
                 "port": {"preferred": self.pm}, "stop_grace_ms": 1000}
        if restart:
            model["restart"] = restart
        check = {"id": "app-model", "mode": "model_server_down", "interval_ms": 200,
                 "params": {"service": "app", "server": "model",
                            "url": "http://127.0.0.1:%d" % self.pm, "model": "llama3.2:1b",
                            "timeout_ms": 1000, "generate_deadline_ms": 2000,
                            "ready_timeout_ms": 3000}}
        self.write_config([check], services=[self.app_service(), model],
                          port_registry=os.path.join(self.stack, "run", "ports.json"))
        self.start_daemon()
        for name in ("app", "model"):
            self.wait_for(lambda: self.service(name).get("state") == "ready", TIMEOUT_S,
                          name + " ready")
        self.wait_for(lambda: self.check("app-model")["state"] == "ok", TIMEOUT_S,
                      "app-model ok")
        self.assertEqual(self.incidents("app-model"), [])
        self.assertEqual(self.generate()["response"], "ok")

    def check(self, check_id):
        st = self.api("GET", "/v1/status", expect=200).json
        return [c for c in st["checks"] if c["id"] == check_id][0]

    def generate(self):
        port = self.service()["port"]
        req = urllib.request.Request("http://127.0.0.1:%d/generate" % port, method="POST",
                                     data=json.dumps({"prompt": "hi"}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def generate_error(self):
        try:
            self.generate()
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())["error"]
        self.fail("the generate was served")

    def remediate(self, inc):
        return [s for s in inc["steps"] if s["phase"] == "remediate"][-1]["message"]

    def heal(self, kind):
        self.start()
        pid = self.service("model")["pid"]
        self.inject("model_server_down", "--kind", kind)
        inc = self.wait_incident("app-model", timeout=LONG_TIMEOUT_S)
        self.assertTrue(inc["within_target"], inc)
        self.assertIn("restarted the model server", self.remediate(inc))
        self.assertIn("/api/tags lists llama3.2:1b; generate answered", self.remediate(inc))
        self.assertNotEqual(self.service("model")["pid"], pid)
        self.assertEqual(self.generate()["response"], "ok")
        return inc

    def test_hung_server_is_restarted(self):
        inc = self.heal("hang")
        self.assertIn("/api/version timeout", inc["evidence"])

    def test_erroring_server_is_restarted(self):
        inc = self.heal("error")
        self.assertIn("answered 500: llama runner process has terminated", inc["evidence"])

    def test_killed_server_is_started(self):
        # A long restart backoff: the check, not the supervisor's own restart, brings it back.
        self.start(restart={"backoff_base_ms": 60000, "backoff_max_ms": 60000})
        self.inject("model_server_down", "--kind", "kill")
        inc = self.wait_incident("app-model", timeout=LONG_TIMEOUT_S)
        self.assertTrue(inc["within_target"], inc)
        # Refused, or cut off mid-answer when the kill lands during a probe ("error").
        self.assertRegex(inc["evidence"], r"/api/version (refused|error) after \d+ ms")
        self.assertIn("restarted the model server", self.remediate(inc))
        self.assertEqual(self.generate()["response"], "ok")

    def test_server_that_cannot_start_degrades_the_feature_until_it_answers(self):
        flag = os.path.join(self.tmp, "model-broken")
        self.start(restart={"backoff_base_ms": 200, "backoff_max_ms": 1000}, broken_flag=flag)
        with open(flag, "w"):
            pass
        self.inject("model_server_down", "--kind", "kill")
        inc = self.wait_incident("app-model", state="escalated", timeout=LONG_TIMEOUT_S)
        self.assertIn("ALERT: the model server is not ready", self.remediate(inc))
        self.assertEqual(self.generate_error(), (503, "feature degraded: model"))
        self.assertTrue(self.check("app-model")["held"])
        # The server can start again: the supervisor's backoff brings it up, the check sees it
        # answer (new input), the hold lifts and the feature comes back without a human.
        os.remove(flag)
        healed = self.wait_incident("app-model", after=inc["id"], timeout=LONG_TIMEOUT_S)
        self.assertIn("the model server answers again", self.remediate(healed))
        self.assertIn("'model' re-enabled", self.remediate(healed))
        self.assertEqual(self.generate()["response"], "ok")
        self.assertFalse(self.check("app-model")["held"])


if __name__ == "__main__":
    import unittest
    unittest.main()
