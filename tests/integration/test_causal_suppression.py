"""Causal suppression: a check that `depends_on` another gets no playbook of its own while that
one is failing. Its incident is linked to the root cause's (`caused_by`), waits, and ends when
its own probe passes after the root cause healed; if it still fails then, the failure was its
own and its playbook runs. Two real files stand in for two services: `site`'s config is a
symlink to `base`'s, so deleting base's file breaks both checks at once, and restoring it heals
both, as a network outage breaks every check that calls out through it."""

import http.server
import os
import threading
import time
import unittest

from harness import GOOD_CONFIG, LONG_TIMEOUT_S, TIMEOUT_S, GuardianTestCase


class SlowOkHandler(http.server.BaseHTTPRequestHandler):
    """200 after 1.5 s: a dependency that is fine but slow to say so."""

    def do_GET(self):
        time.sleep(1.5)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def phases(inc):
    return [s["phase"] for s in inc["steps"]]


class CausalSuppressionTest(GuardianTestCase):
    def start(self, site_is_link=True, base_playbook="slow_restore"):
        self.base, _ = self.make_app_file("base")
        site_dir = self.path("site")
        os.makedirs(site_dir)
        self.site = os.path.join(site_dir, "app.yaml")
        if site_is_link:
            os.symlink(self.base, self.site)
        else:
            with open(self.site, "w") as f:
                f.write(GOOD_CONFIG)
        # base heals slowly (its remediate waits 3 s), so site sees the outage for sure.
        base = self.check("base", self.base, playbook=base_playbook)
        site = dict(self.check("site", self.site), depends_on=["base"])
        self.write_config([base, site], test_playbooks=True)
        self.start_daemon()
        for c in ("base", "site"):
            self.wait_for(lambda: (self.check_status(c) or {}).get("state") == "ok", TIMEOUT_S,
                          c + " ok")

    def test_one_root_cause_one_playbook(self):
        self.start()
        os.remove(self.base)
        root = self.wait_incident("base", timeout=LONG_TIMEOUT_S)
        self.assertEqual(root["state"], "resolved", root)
        dep = self.wait_incident("site", timeout=LONG_TIMEOUT_S)
        self.assertEqual(dep["state"], "resolved", dep)
        self.assertEqual(dep["caused_by"], root["id"], dep)
        self.assertIsNone(root["caused_by"])
        # Only the root cause's playbook ran; the dependent only waited.
        self.assertIn("remediate", phases(self.incident(root["id"])))
        dep = self.incident(dep["id"])
        self.assertEqual(phases(dep), ["observe"], dep)
        self.assertIn("caused by check base", dep["steps"][0]["message"])
        self.assertIn("recovered", dep["reason"])
        # site healed when base's remediation did (its own probe may see it before base's does)
        fix = [s for s in self.incident(root["id"])["steps"] if s["phase"] == "remediate"][-1]
        self.assertGreaterEqual(dep["recovered_at"], fix["started_at"])
        with open(self.site) as f:
            self.assertEqual(f.read(), GOOD_CONFIG)
        self.assertTrue(os.path.islink(self.site), "site's own playbook never touched it")
        text = self.run_cli(*(self.read_args() + ["incident", str(dep["id"])])).stdout
        self.assertIn("caused by incident %d" % root["id"], text)

    def test_a_dependent_still_failing_after_the_root_heals_acts_on_its_own(self):
        self.start(site_is_link=False)
        # Both break; base's heal does not heal site, whose file is its own.
        os.remove(self.site)
        os.remove(self.base)
        root = self.wait_incident("base", timeout=LONG_TIMEOUT_S)
        self.assertEqual(root["state"], "resolved", root)
        dep = self.wait_incident("site", timeout=LONG_TIMEOUT_S)
        self.assertEqual(dep["state"], "resolved", dep)
        dep = self.incident(dep["id"])
        # It waited on base first, then ran its own playbook; the link was dropped.
        self.assertEqual(phases(dep)[0], "observe", dep)
        self.assertIn("remediate", phases(dep))
        self.assertIsNone(dep["caused_by"], dep)
        with open(self.site) as f:
            self.assertEqual(f.read(), GOOD_CONFIG)

    def test_a_dependency_that_is_fine_does_not_hold_back_the_playbook(self):
        self.start(site_is_link=False)
        os.remove(self.site)
        dep = self.wait_incident("site", timeout=LONG_TIMEOUT_S)
        self.assertEqual(dep["state"], "resolved", dep)
        dep = self.incident(dep["id"])
        self.assertIsNone(dep["caused_by"])
        self.assertNotIn("observe", phases(dep))
        self.assertIn("remediate", phases(dep))
        self.assertEqual(self.incidents("base"), [])

    def test_status_shows_the_link_while_the_root_cause_heals(self):
        self.start()
        os.remove(self.base)

        def linked():
            st = self.status_json() or {}
            for i in st.get("incidents", []):
                if i["check"] == "site" and i.get("caused_by"):
                    return i
            return None
        i = self.wait_for(linked, LONG_TIMEOUT_S, "site's incident linked in the status")
        self.assertTrue(i["observing"])
        self.assertEqual(i["caused_by"], self.incidents("base")[0]["id"])

    def test_a_resume_while_dependencies_are_probed_acts_once(self):
        # An incident that observed (observe mode) is resumed by a reload to `act`; while its
        # dependency is being asked (slowly), a release resumes observed incidents again: the
        # incident must not start a second attempt.
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowOkHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        self.site, _ = self.make_app_file("site")
        slow = {"id": "slow-dep", "mode": "http", "interval_ms": 5000,
                "params": {"url": "http://127.0.0.1:%d/" % server.server_port,
                           "timeout_ms": 5000, "on_fail": ["/bin/true"]}}
        # slow_backup: its backup takes 3 s, so a second attempt would start during the first.
        site = dict(self.check("site", self.site, playbook="slow_backup"), depends_on=["slow-dep"])
        self.write_config([slow, site], test_playbooks=True, mode="observe")
        self.start_daemon()
        for c in ("slow-dep", "site"):
            self.wait_for(lambda: (self.check_status(c) or {}).get("state") == "ok",
                          LONG_TIMEOUT_S, c + " ok")
        os.remove(self.site)
        self.wait_for(lambda: self.incidents("site") and "observe" in phases(
            self.incident(self.incidents("site")[0]["id"])), TIMEOUT_S, "site observing")
        self.write_config([slow, site], test_playbooks=True, mode="act")
        self.cli("reload")
        time.sleep(0.5)  # its dependency's answer is 1 s away
        self.cli("release", "site")
        inc = self.wait_incident("site", timeout=LONG_TIMEOUT_S)
        inc = self.incident(inc["id"])
        self.assertEqual(inc["state"], "resolved", inc)
        self.assertEqual(inc["attempts"], 1, inc)
        self.assertEqual(phases(inc).count("backup"), 1, phases(inc))
        self.assertEqual(phases(inc).count("remediate"), 1, phases(inc))

if __name__ == "__main__":
    unittest.main()
