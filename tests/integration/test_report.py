"""The MTTR report: chaos runs stored through the API (POST/GET /v1/chaos-runs), and
`guardian report --html FILE`, rendered headless in Debian's Chromium: the charts are in the
page, and the browser's console stays empty (no script error, nothing the page's
Content-Security-Policy had to block)."""

import os
import re
import shutil
import subprocess
import unittest

from harness import TIMEOUT_S
from test_api import ApiTestCase

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def summary(ok=True, mttr_p95=400, **over):
    run = {"format": "guardian-chaos-run/1", "started_at": 1795500000000,
           "ended_at": 1795500030000, "ok": ok, "seed": 7, "repeat": 1, "experiments": 2,
           "failed": 0 if ok else 1, "skipped": 0,
           "modes": {"missing_config": {"count": 2, "ok": 2, "failed": 0, "skipped": 0,
                                        "target_ms": 10000,
                                        "mttd_ms": {"p50": 20, "p95": 30, "max": 30},
                                        "mttr_ms": {"p50": 90, "p95": mttr_p95,
                                                    "max": mttr_p95}}}}
    run.update(over)
    return run


def render(test, page):
    """Chromium headless on `page`: (the DOM after load, the console lines it logged)."""
    if not os.access(CHROMIUM, os.X_OK):
        test.fail("chromium is not installed (scripts/setup installs Debian's chromium)")
    profile = test.path("chromium-profile-%d" % len(os.listdir(test.tmp)))
    # The flags keep it off the network (this machine has none), and without a sandbox as root.
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0",
                        "--dump-dom", "file://" + page],
                       capture_output=True, text=True, timeout=120)
    test.assertEqual(r.returncode, 0, r.stderr[-2000:])
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    return r.stdout, console


class ChaosRunsApiTest(ApiTestCase):
    def test_runs_are_stored_and_listed_newest_first(self):
        self.start_one()
        first = self.api("POST", "/v1/chaos-runs", summary(), expect=201).json
        second = self.api("POST", "/v1/chaos-runs", summary(ok=False, seed=8), expect=201).json
        self.assertGreater(second["id"], first["id"])
        runs = self.api("GET", "/v1/chaos-runs", expect=200).json["runs"]
        self.assertEqual([r["id"] for r in runs], [second["id"], first["id"]])
        self.assertEqual(runs[0]["ok"], False)
        self.assertEqual(runs[0]["seed"], 8)
        self.assertEqual(runs[1]["modes"]["missing_config"]["mttr_ms"]["p95"], 400)
        self.assertEqual(runs[1]["started_at"], 1795500000000)
        self.assertGreater(runs[1]["stored_at"], 0)
        only = self.api("GET", "/v1/chaos-runs?limit=1", expect=200).json["runs"]
        self.assertEqual([r["id"] for r in only], [second["id"]])
        # Kept across a restart: the store has them.
        self.stop_daemon()
        self.start_daemon()
        again = self.api("GET", "/v1/chaos-runs", expect=200).json["runs"]
        self.assertEqual([r["id"] for r in again], [second["id"], first["id"]])
        self.stop_daemon()

    def test_a_bad_run_is_refused_naming_what_is_wrong(self):
        self.start_one()
        cases = [
            ({k: v for k, v in summary().items() if k != "format"}, "format"),
            (summary(format="guardian-chaos-run/0"), "guardian-chaos-run/1"),
            (summary(ok="yes"), "'ok'"),
            (summary(extra=1), "'extra'"),
            (summary(modes={"db": 3}), "modes.db"),
            ({k: v for k, v in summary().items() if k != "modes"}, "modes"),
        ]
        for body, needle in cases:
            with self.subTest(needle=needle):
                self.assert_error(self.api("POST", "/v1/chaos-runs", body), 400, needle)
        self.assert_error(self.api("GET", "/v1/chaos-runs?limit=0"), 400, "limit")
        self.assert_error(self.api("GET", "/v1/chaos-runs?since=1"), 400, "since")
        self.assert_error(self.api("DELETE", "/v1/chaos-runs"), 405)
        self.assertEqual(self.api("GET", "/v1/chaos-runs", expect=200).json["runs"], [])
        self.stop_daemon()


class ReportTest(ApiTestCase):
    def test_the_report_renders_in_chromium_with_its_charts_and_no_console_errors(self):
        self.start_one()
        first = self.break_and_heal("app", self.app)
        second = self.break_and_heal("app", self.app, newer_than=first["id"])
        self.api("POST", "/v1/chaos-runs", summary(), expect=201)
        self.api("POST", "/v1/chaos-runs", summary(mttr_p95=12000), expect=201)
        page = self.path("report.html")
        r = self.run_cli("report", "--html", page, timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("2 incidents", r.stdout)
        self.assertIn("2 chaos runs", r.stdout)
        with open(page, encoding="utf-8") as f:
            html = f.read()
        self.assertIn("Content-Security-Policy", html)
        self.assertNotIn("<script", html)

        dom, console = render(self, page)
        self.assertEqual(console, [], "\n".join(console))
        self.assertIn('class="chart mode-chart"', dom)
        # One timeline per incident, newest first, with a rect per step.
        labels = re.findall(r"#(\d+) app \(missing_config\)", dom)
        self.assertEqual(labels[:2], [str(second["id"]), str(first["id"])], labels)
        self.assertGreaterEqual(dom.count('class="phase remediate'), 2)
        # The trend: a line for the mode across the two runs, over target in the second.
        self.assertIn('data-mode="missing_config"', dom)
        self.assertIn('class="chart trend"', dom)
        self.stop_daemon()

    def test_the_console_check_sees_a_script_error_and_a_blocked_fetch(self):
        # The check above can fail: a page with a failing script and a remote image shows both.
        page = self.path("bad.html")
        with open(page, "w", encoding="utf-8") as f:
            f.write('<!DOCTYPE html><html><head><meta charset="utf-8">'
                    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
                    'script-src \'unsafe-inline\'"></head><body>'
                    '<img src="http://192.0.2.1/x.png"><script>nosuch();</script></body></html>')
        _, console = render(self, page)
        text = "\n".join(console)
        self.assertIn("nosuch is not defined", text)
        self.assertIn("Content Security Policy", text)

    def test_without_a_daemon_report_says_how_to_start_one(self):
        r = self.run_cli("report", "--html", self.path("r.html"))
        self.assertEqual(r.returncode, 3, r)
        self.assertIn("no guardiand answers", r.stderr)
        self.assertFalse(os.path.exists(self.path("r.html")))


if __name__ == "__main__":
    unittest.main()
