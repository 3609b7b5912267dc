"""The operator API and the CLI over it, end to end: every endpoint on the daemon's real Unix
socket (and optionally TCP), every `guardian` command with and without --json, the socket's
permissions, bad and hostile requests, reloads (API and SIGHUP), observe mode, holds, dry runs
and /metrics (checked by promtool when it is installed).

Incidents are real: a watched file is broken with garbage and the daemon heals it."""

import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
import unittest

from harness import (GOOD_CONFIG, GUARDIAN, GUARDIAND, LONG_TIMEOUT_S, REPO_PLAYBOOKS,
                     TEST_PLAYBOOKS, TIMEOUT_S, GuardianTestCase,
                     http_request, read_or_none, read_text, write_atomic)

GARBAGE = "server: [port: {{ 8080\n"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
NO_DAEMON_HINT = "guardiand --config"

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric(text, name, **labels):
    """The value of the sample `name` whose labels are exactly `labels`, or None."""
    want = {k: str(v) for k, v in labels.items()}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m and m.group(1) == name and dict(_LABEL.findall(m.group(2) or "")) == want:
            return float(m.group(3))
    return None


def tree_snapshot(root, skip=()):
    """{relative path: (type, size, mtime_ns, content)} for everything under `root`."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if rel in skip:
                continue
            st = os.lstat(p)
            content = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    content = f.read()
            out[rel] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, content)
    return out


def free_tcp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nearest_rank(values, p):
    """The API's percentile: the smallest value with at least p of the samples at or below it."""
    v = sorted(values)
    rank = -(-int(p * 100) * len(v) // 100)  # ceil(p * n) without float error
    return v[min(max(rank, 1), len(v)) - 1]


class ApiTestCase(GuardianTestCase):

    def start_one(self, checks=None, **top):
        self.app, _ = self.make_app_file("app")
        self.write_config(checks or [self.check("app", self.app)], **top)
        self.start_daemon()
        self.wait_version("app", GOOD_CONFIG)
        return self.daemon

    def break_and_heal(self, check_id, path, good=GOOD_CONFIG, newer_than=None):
        if newer_than is None:
            newer_than = max([i["id"] for i in self.incidents(check_id)] or [0])
        write_atomic(path, GARBAGE)
        self.wait_content(path, good)
        inc = self.wait_incident(check_id, newer_than=newer_than)
        self.assertEqual(inc["state"], "resolved", inc)
        return inc

    def assert_error(self, r, status, *needles):
        """An API error: the status, a JSON body {"error": {"status", "message"}} and nothing else
        (a reload's 422 may add error.errors)."""
        self.assertEqual(r.status, status, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r.headers)
        self.assertIsInstance(r.json, dict, r)
        self.assertEqual(set(r.json), {"error"}, r)
        err = r.json["error"]
        self.assertEqual(err.get("status"), status, r)
        self.assertIsInstance(err.get("message"), str, r)
        self.assertTrue(err["message"].strip(), r)
        self.assertLessEqual(set(err) - {"status", "message"}, {"errors"}, r)
        for needle in needles:
            self.assertIn(needle, err["message"], r)
        return err

    def health(self, **kw):
        return self.api("GET", "/v1/health", expect=200, **kw).json

    def status(self):
        return self.api("GET", "/v1/status", expect=200).json

    def status_check(self, check_id):
        for c in self.status()["checks"]:
            if c["id"] == check_id:
                return c
        return None

    def metrics(self):
        r = self.api("GET", "/metrics", expect=200)
        self.assertTrue(r.headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
                        r.headers)
        return r.text

    def assert_promtool_clean(self, text):
        if not os.access(PROMTOOL, os.X_OK):
            return  # only this sub-assertion: promtool (Debian package prometheus) is missing
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 0, "promtool check metrics:\n%s%s\n--- input ---\n%s"
                         % (r.stdout, r.stderr, text))

    def assert_stays(self, path, content, seconds):
        """`path` keeps `content` for `seconds` (a bounded observation, not a latency check)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.assertEqual(read_or_none(path), content, "%s was changed" % path)
            self.assertTrue(self.daemon.alive(), self.daemon.log_tail())
            time.sleep(0.05)

    def assert_cli(self, r, rc, *needles, stream="stdout"):
        self.assertEqual(r.returncode, rc, "exit %d (wanted %d)\nstdout: %s\nstderr: %s"
                         % (r.returncode, rc, r.stdout, r.stderr))
        text = getattr(r, stream)
        for needle in needles:
            if isinstance(needle, re.Pattern):
                self.assertRegex(text, needle)
            else:
                self.assertIn(needle, text, "%s of guardian:\n%s" % (stream, text))
        return text


class EndpointTest(ApiTestCase):

    def test_health_and_status(self):
        d = self.start_one()
        h = self.health()
        version = subprocess.run([GUARDIAND, "--version"], capture_output=True, text=True,
                                 timeout=TIMEOUT_S).stdout.split()[-1]
        self.assertEqual(h["status"], "ok", h)
        self.assertEqual(h["pid"], d.pid)
        self.assertEqual(h["version"], version)
        self.assertEqual(h["mode"], "act")
        self.assertEqual(h["checks"], 1)
        self.assertEqual(h["open_incidents"], 0)

        r = self.api("GET", "/v1/status", expect=200)
        self.assertTrue(r.headers["content-type"].startswith("application/json"), r.headers)
        st = r.json
        self.assertEqual(st["pid"], d.pid)
        self.assertEqual(st["mode"], "act")
        self.assertEqual(st["config"], self.config_path)
        self.assertEqual(st["config_errors"], [])
        self.assertEqual(st["playbook_errors"], [])
        self.assertEqual(st["api"]["socket"], self.api_socket)
        self.assertIsNone(st["api"]["tcp"])
        self.assertEqual([(c["id"], c["mode"], c["held"]) for c in st["checks"]],
                         [("app", "missing_config", False)])
        self.wait_for(lambda: self.status_check("app")["state"] == "ok", what="app state ok")

        # status.json is the same document (its check entries are kept as text between writes).
        def file_matches_api():
            f, a = self.status_json(), self.api("GET", "/v1/status", expect=200).json
            return f and set(f) == set(a) and f["checks"] == a["checks"] and f
        self.assertEqual(self.wait_for(file_matches_api, what="status.json as /v1/status")
                         ["checks"][0]["budget_spent"], 0)

        # An open incident shows in health while it lasts.
        write_atomic(self.app, GARBAGE)
        self.wait_content(self.app, GOOD_CONFIG)
        self.wait_incident("app")
        self.wait_for(lambda: self.health()["open_incidents"] == 0, what="no open incident")
        # ...and the file's entry of the check follows: the action is counted there too.
        self.assertEqual(self.wait_for(file_matches_api, what="status.json as /v1/status")
                         ["checks"][0]["budget_spent"], 1)
        self.stop_daemon()

    def test_wrong_method_unknown_path_and_stray_parameters(self):
        self.start_one()
        for method, path, allowed in [
                ("POST", "/v1/health", "GET"), ("DELETE", "/v1/status", "GET"),
                ("PUT", "/v1/incidents", "GET"), ("POST", "/v1/incidents/1", "GET"),
                ("DELETE", "/v1/mttr", "GET"), ("POST", "/metrics", "GET"),
                ("GET", "/v1/reload", "POST"), ("GET", "/v1/checks/app/hold", "POST"),
                ("PUT", "/v1/checks/app/release", "POST"), ("GET", "/v1/checks/app/run", "POST")]:
            with self.subTest(method=method, path=path):
                self.assert_error(self.api(method, path), 405, "method not allowed", allowed)
        for path in ("/", "/v1", "/v1/nothing", "/v2/health", "/v1/checks/app/frobnicate",
                     "/v1/checks/app", "/v1/checks/BAD!/hold", "/metrics/extra"):
            with self.subTest(path=path):
                self.assert_error(self.api("GET", path), 404)
        for path in ("/v1/health?x=1", "/v1/status?verbose=1", "/metrics?name=x"):
            with self.subTest(path=path):
                self.assert_error(self.api("GET", path), 400, "takes no query parameters")
        # Nothing above cost the daemon anything.
        self.assertEqual(self.health()["status"], "ok")
        self.stop_daemon()

    def test_incidents_filters_lookup_and_mttr(self):
        self.app, _ = self.make_app_file("app")
        app = dict(self.check("app", self.app), target_ms=7000)
        # "lost" has no good copy anywhere: its playbook cannot fix it, so it escalates.
        lost_path, _ = self.make_app_file("lost", content=None)
        lost = dict(self.check("lost", lost_path, retries=0), target_ms=9000)
        self.write_config([app, lost])
        self.start_daemon()
        self.wait_version("app", GOOD_CONFIG)
        # The status shows each check's probe period and target, defaults applied.
        self.assertEqual({k: self.status_check("app")[k] for k in ("interval_ms", "target_ms")},
                         {"interval_ms": 200, "target_ms": 7000})
        self.assertEqual(self.status_check("lost")["target_ms"], 9000)
        esc = self.wait_incident("lost", states=("escalated",))
        healed = [self.break_and_heal("app", self.app) for _ in range(3)]

        everything = self.api("GET", "/v1/incidents", expect=200).json["incidents"]
        ids = [i["id"] for i in everything]
        self.assertEqual(ids, sorted(ids, reverse=True), "newest first")
        self.assertEqual(sorted(ids), sorted([esc["id"]] + [i["id"] for i in healed]))

        def listed(query):
            r = self.api("GET", "/v1/incidents?" + query, expect=200)
            return [i["id"] for i in r.json["incidents"]]

        app_ids = sorted((i["id"] for i in healed), reverse=True)
        self.assertEqual(listed("check=app"), app_ids)
        self.assertEqual(listed("check=lost"), [esc["id"]])
        self.assertEqual(listed("check=nobody"), [])
        self.assertEqual(listed("state=resolved"), app_ids)
        self.assertEqual(listed("state=escalated"), [esc["id"]])
        self.assertEqual(listed("state=open"), [])
        self.assertEqual(listed("mode=missing_config"), ids)
        self.assertEqual(listed("mode=db_corruption"), [])
        self.assertEqual(listed("limit=1"), ids[:1])
        self.assertEqual(listed("limit=2"), ids[:2])
        self.assertEqual(listed("check=app&state=resolved&limit=2"), app_ids[:2])
        since = sorted(i["onset_at"] for i in everything)[2]
        expected = [i["id"] for i in everything if i["onset_at"] >= since]
        self.assertTrue(0 < len(expected) < len(ids), "since must split the list")
        self.assertEqual(listed("since=%d" % since), expected)
        self.assertEqual(listed("since=%d" % (max(i["onset_at"] for i in everything) + 1)), [])

        for query, needle in [("foo=1", "'foo'"), ("check=app&bogus=x", "'bogus'"),
                              ("mode=not_a_mode", "mode"), ("state=done", "state"),
                              ("since=yesterday", "since"), ("limit=0", "limit"),
                              ("limit=10001", "limit"), ("limit=many", "limit")]:
            with self.subTest(query=query):
                self.assert_error(self.api("GET", "/v1/incidents?" + query), 400, needle)

        # One incident, with its steps.
        one = self.api("GET", "/v1/incidents/%d" % healed[-1]["id"], expect=200).json
        self.assertEqual((one["id"], one["check"], one["state"]), (healed[-1]["id"], "app", "resolved"))
        for phase in ("backup", "remediate", "verify", "probe"):
            self.assert_step(one, phase, "ok")
        self.assertEqual(self.api("GET", "/v1/incidents/%d" % esc["id"], expect=200).json["state"],
                         "escalated")
        missing = max(ids) + 1000
        self.assert_error(self.api("GET", "/v1/incidents/%d" % missing), 404, "no incident %d" % missing)
        for bad in ("abc", "-1", "1x", "1.5", "99999999999999999999"):
            with self.subTest(id=bad):
                self.assert_error(self.api("GET", "/v1/incidents/" + bad), 400, "positive integer")

        # MTTR per mode, from the resolved incidents only, against the tightest target (7 s).
        resolved = [i for i in everything if i["state"] == "resolved"]
        mttr = self.api("GET", "/v1/mttr", expect=200).json
        self.assertEqual([m["mode"] for m in mttr["modes"]], ["missing_config"])
        row = mttr["modes"][0]
        times = [i["mttr_ms"] for i in resolved]
        detect = [i["mttd_ms"] for i in resolved]
        self.assertEqual(row["count"], 3)
        self.assertEqual(row["target_ms"], 7000)
        self.assertEqual(row["mttr_p50_ms"], nearest_rank(times, 0.50))
        self.assertEqual(row["mttr_p95_ms"], nearest_rank(times, 0.95))
        self.assertEqual(row["mttr_max_ms"], max(times))
        self.assertEqual(row["mttd_p50_ms"], nearest_rank(detect, 0.50))
        self.assertEqual(row["mttd_max_ms"], max(detect))
        self.assertEqual(row["over_target_count"], sum(1 for t in times if t > 7000))
        self.assertEqual(row["over_target"], row["mttr_p95_ms"] > 7000)
        later = self.api("GET", "/v1/mttr?since=%d" % (max(i["onset_at"] for i in resolved) + 1),
                         expect=200).json["modes"][0]
        self.assertEqual((later["count"], later["mttr_p50_ms"], later["target_ms"]), (0, None, 7000))
        self.assert_error(self.api("GET", "/v1/mttr?until=1"), 400, "'until'")
        self.assert_error(self.api("GET", "/v1/mttr?since=soon"), 400, "since")
        self.stop_daemon()

    def test_pipelined_requests_see_each_others_changes(self):
        # Status answers are shared by the requests read in one pass of the server (PassCache,
        # unit-tested in api_test): pipelined on one connection, a hold between two status
        # requests must show in the second.
        self.start_one()
        hold = json.dumps({"reason": "pipelined"}).encode()
        raw = (b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
               b"POST /v1/checks/app/hold HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s"
               b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (len(hold), hold))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT_S)
            s.connect(self.api_socket)
            s.sendall(raw)
            data = b""
            while True:  # the last request asked the daemon to close
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk

        class Stream(io.BytesIO):
            def close(self):  # HTTPResponse closes its file after each body; keep reading
                pass
        stream = Stream(data)

        class OneStream:  # every response reads from the same stream
            def makefile(self, *a, **kw):
                return stream
        bodies = []
        for _ in range(3):
            r = http.client.HTTPResponse(OneStream())
            r.begin()
            self.assertEqual(r.status, 200)
            bodies.append(json.loads(r.read()))
        self.assertIs(bodies[0]["checks"][0]["held"], False)
        self.assertIs(bodies[1]["held"], True)
        self.assertIs(bodies[2]["checks"][0]["held"], True, bodies[2])
        self.assertEqual(bodies[2]["checks"][0]["hold_reason"], "pipelined")
        self.stop_daemon()

    def test_hold_during_backup_stops_the_attempt_before_remediate(self):
        self.app, _ = self.make_app_file("app")
        self.write_config([self.check("app", self.app, playbook="slow_backup")], test_playbooks=True)
        self.start_daemon()
        self.wait_version("app", GOOD_CONFIG)
        write_atomic(self.app, GARBAGE)
        inc = self.wait_for(lambda: [i for i in self.incidents("app") if any(
            s["phase"] == "backup" and s["status"] == "running" for s in i["steps"])],
            what="backup (a 3 s pause) to be running")[0]
        self.api("POST", "/v1/checks/app/hold", {"reason": "maintenance"}, expect=200)
        # Backup finishes; the attempt stops there and the incident waits, acting on nothing.
        self.wait_for(lambda: any(s["phase"] == "observe" for s in self.incident(inc["id"])["steps"]),
                      what="the incident to wait on the hold")
        time.sleep(1.0)
        self.assertEqual(read_text(self.app), GARBAGE, "remediate ran on a held check")
        now = self.incident(inc["id"])
        self.assertFalse([s for s in now["steps"] if s["phase"] == "remediate"], now)
        self.assertEqual(now["state"], "open", now)
        # Released: it acts and heals.
        self.api("POST", "/v1/checks/app/release", expect=200)
        self.wait_content(self.app, GOOD_CONFIG, timeout=LONG_TIMEOUT_S)
        done = self.wait_incident("app", newer_than=inc["id"] - 1, timeout=LONG_TIMEOUT_S)
        self.assertEqual(done["state"], "resolved", done)
        self.stop_daemon()

    def test_reload_refuses_a_body_it_does_not_understand(self):
        self.start_one()
        self.assert_error(self.api("POST", "/v1/reload", {"bogus": 1}), 400, "bogus")
        self.assert_error(self.api("POST", "/v1/reload", "{"), 400, "not valid JSON")
        self.assertNotIn("reloading", self.daemon.log())
        self.stop_daemon()

    def test_hold_release_and_run(self):
        self.start_one()
        # Bad hold requests change nothing.
        for body, status, needle in [
                ({"reason": ""}, 400, "non-empty"), ({}, 400, "reason"), (None, 400, "reason"),
                ({"reason": 5}, 400, "wrong type"), ({"reason": "x", "until": 1}, 400, "'until'"),
                ({"reason": "x" * 1025}, 400, "1024")]:
            with self.subTest(body=body):
                self.assert_error(self.api("POST", "/v1/checks/app/hold", body), status, needle)
        self.assert_error(self.api("POST", "/v1/checks/nope/hold", {"reason": "x"}), 404, "nope")
        self.assert_error(self.api("POST", "/v1/checks/nope/release"), 404, "nope")
        self.assert_error(self.api("POST", "/v1/checks/nope/run"), 404, "nope")
        self.assert_error(self.api("POST", "/v1/checks/app/release", {"now": True}), 400, "'now'")
        self.assertIs(self.status_check("app")["held"], False)

        # A healthy check: run probes it and does nothing else.
        r = self.api("POST", "/v1/checks/app/run", {}, expect=200).json
        self.assertEqual((r["check"], r["result"], r["healthy"]), ("app", "healthy", True))
        self.assertNotIn("incident", r)
        self.assertEqual(self.incidents("app"), [])

        # Forced: an incident is opened at once and its playbook runs to a verified heal.
        r = self.api("POST", "/v1/checks/app/run", {"force": True}, expect=200).json
        self.assertEqual(r["result"], "opened", r)
        inc = self.wait_incident("app")
        self.assertEqual(inc["id"], r["incident"])
        self.assertEqual(inc["state"], "resolved", inc)
        self.assert_step(self.incident(inc["id"]), "remediate", "ok")
        self.assertEqual(read_text(self.app), GOOD_CONFIG)

        r = self.api("POST", "/v1/checks/app/hold", {"reason": "maintenance window"}, expect=200).json
        self.assertEqual(r, {"check": "app", "held": True, "reason": "maintenance window"})
        c = self.status_check("app")
        self.assertEqual((c["held"], c["hold_reason"]), (True, "maintenance window"))
        self.assertIsInstance(c["hold_since"], int)
        self.assertEqual(metric(self.metrics(), "guardian_check_held", check="app",
                                mode="missing_config"), 1)

        # Held: a broken file stays broken, no incident opens, and run is refused.
        write_atomic(self.app, GARBAGE)
        self.wait_for(lambda: self.status_check("app")["state"] == "failing", what="app failing")
        self.assert_stays(self.app, GARBAGE, 1.5)
        self.assertEqual([i["id"] for i in self.incidents("app")], [inc["id"]])
        self.assert_error(self.api("POST", "/v1/checks/app/run", {}), 409, "held",
                          "maintenance window")
        self.assert_error(self.api("POST", "/v1/checks/app/run", {"force": True}), 409, "held")

        # A dry run is allowed while held, says what it would do, and changes nothing.
        check_dir = os.path.join(self.state_dir, "checks", "app")
        app_dir = os.path.dirname(self.app)
        skip = {"status.json", "status.json.tmp"}  # rewritten every second by design
        before = (tree_snapshot(self.state_dir, skip), tree_snapshot(app_dir))
        self.assertTrue(os.path.isdir(check_dir), check_dir)
        r = self.api("POST", "/v1/checks/app/run", {"dry_run": True}, expect=200).json
        self.assertEqual((r["dry_run"], r["check"], r["playbook"]), (True, "app", "missing_config"))
        phases = {p["phase"]: p for p in r["phases"]}
        self.assertEqual([p["phase"] for p in r["phases"]], ["backup", "remediate", "verify", "rollback"])
        self.assertEqual(phases["remediate"]["status"], "ok", r)
        self.assertIn("last-known-good", phases["remediate"]["message"])
        # verify reads the real file, which the dry run did not touch: still garbage.
        self.assertEqual(phases["verify"]["status"], "failed", r)
        copies = [a for a in r["actions"] if a["phase"] == "remediate" and "copy" in a["call"]]
        self.assertTrue(copies and self.app in copies[0]["args"], r["actions"])
        self.assertTrue(any(a["phase"] == "backup" and "copy" in a["call"] for a in r["actions"]),
                        r["actions"])
        self.assertEqual(read_text(self.app), GARBAGE)
        # Nothing written: not the check's state dir (no file set aside), not the store, not
        # the watched file's folder.
        self.assertEqual((tree_snapshot(self.state_dir, skip), tree_snapshot(app_dir)), before)
        self.assertEqual([i["id"] for i in self.incidents("app")], [inc["id"]])

        # Release: the check acts again and heals.
        r = self.api("POST", "/v1/checks/app/release", expect=200).json
        self.assertEqual(r, {"check": "app", "held": False})
        self.wait_content(self.app, GOOD_CONFIG)
        healed = self.wait_incident("app", newer_than=inc["id"])
        self.assertEqual(healed["state"], "resolved", healed)
        c = self.status_check("app")
        self.assertEqual((c["held"], c["hold_reason"]), (False, ""))
        self.assertEqual(metric(self.metrics(), "guardian_check_held", check="app",
                                mode="missing_config"), 0)
        self.stop_daemon()

    def test_metrics_after_a_heal(self):
        self.start_one()
        text = self.metrics()
        self.assertEqual(metric(text, "guardian_incidents_opened_total", mode="missing_config"), 0)
        self.assertIsNone(metric(text, "guardian_mttr_seconds_count", mode="missing_config"))
        self.assert_promtool_clean(text)

        inc = self.break_and_heal("app", self.app)

        # The incident resolves on its own verifying probe; the check's state turns ok at the
        # next scheduled probe after it, which may come a moment later.
        def counted():
            t = self.metrics()
            healed = (metric(t, "guardian_mttr_seconds_count", mode="missing_config") == 1 and
                      metric(t, "guardian_check_state", check="app", mode="missing_config",
                             state="ok") == 1)
            return t if healed else None
        text = self.wait_for(counted, what="the MTTR histogram to count the heal, the check ok")
        self.assert_promtool_clean(text)
        self.assertEqual(metric(text, "guardian_check_state", check="app", mode="missing_config",
                                state="ok"), 1)
        self.assertEqual(metric(text, "guardian_check_state", check="app", mode="missing_config",
                                state="failing"), 0)
        self.assertEqual(metric(text, "guardian_check_held", check="app", mode="missing_config"), 0)
        self.assertEqual(metric(text, "guardian_incidents_opened_total", mode="missing_config"), 1)
        self.assertEqual(metric(text, "guardian_incidents_resolved_total", mode="missing_config"), 1)
        self.assertEqual(metric(text, "guardian_observe_mode"), 0)
        self.assertEqual(metric(text, "guardian_mttr_seconds_bucket", mode="missing_config",
                                le="+Inf"), 1)
        self.assertAlmostEqual(metric(text, "guardian_mttr_seconds_sum", mode="missing_config"),
                               inc["mttr_ms"] / 1000.0, delta=0.0015)
        for stat_name in ("p50", "p99", "max"):
            v = metric(text, "guardian_loop_lag_seconds", stat=stat_name)
            self.assertIsNotNone(v, stat_name)
            self.assertGreaterEqual(v, 0)
        self.assertGreater(metric(text, "guardian_store_write_latency_seconds_count"), 0)
        self.assertIsNotNone(metric(text, "guardian_store_write_latency_seconds_bucket", le="+Inf"))
        self.assertGreater(metric(text, "guardian_api_requests_total"), 1)
        self.assertIn("# TYPE guardian_mttr_seconds histogram", text)
        self.assertIn("# TYPE guardian_store_write_latency_seconds histogram", text)
        self.stop_daemon()

    def test_tcp_listener(self):
        port = free_tcp_port()
        addr = "127.0.0.1:%d" % port
        d = self.start_one(api={"tcp": addr})
        h = http_request("GET", "/v1/health", host_port=addr)
        self.assertEqual(h.status, 200, h)
        self.assertEqual((h.json["pid"], h.json["status"]), (d.pid, "ok"))
        self.assertEqual(self.status()["api"]["tcp"], addr)
        self.assert_error(http_request("GET", "/v1/nothing", host_port=addr), 404)
        r = self.run_cli("--url", "http://" + addr, "status", "--json", state_dir=False,
                         env={"GUARDIAN_SOCKET": None})
        self.assertEqual(json.loads(self.assert_cli(r, 0))["pid"], d.pid)
        # Read-only: TCP has no file permissions, so nothing that changes state is served there.
        for path, body in [("/v1/checks/app/hold", {"reason": "from tcp"}),
                           ("/v1/checks/app/run", {}), ("/v1/reload", {})]:
            with self.subTest(path=path):
                self.assert_error(http_request("POST", path, body, host_port=addr), 403,
                                  "read-only", self.api_socket)
        self.assertIs(self.status_check("app")["held"], False)
        self.stop_daemon()
        with self.assertRaises(OSError):
            http_request("GET", "/v1/health", host_port=addr, timeout=2)

        # Not loopback, no allow_remote: refused by the config check, naming the field.
        for tcp in ("0.0.0.0:%d" % port, "192.0.2.10:%d" % port):
            with self.subTest(tcp=tcp):
                path = self.write_config([self.check("app", self.app)], path=self.path("remote.yaml"),
                                         api={"tcp": tcp})
                r = subprocess.run([GUARDIAND, "--check-config", path], capture_output=True,
                                   text=True, timeout=TIMEOUT_S)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertRegex(r.stderr, r"%s:\d+:\d+: api\.tcp: .*not a loopback.*allow_remote"
                                 % re.escape(path))
        path = self.write_config([self.check("app", self.app)], path=self.path("remote.yaml"),
                                 api={"tcp": "192.0.2.10:%d" % port, "allow_remote": True})
        r = subprocess.run([GUARDIAND, "--check-config", path], capture_output=True, text=True,
                           timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 0, r.stderr)


class SocketTest(ApiTestCase):

    def test_default_socket_is_0660_and_removed_on_stop(self):
        self.start_one()
        st = os.lstat(self.api_socket)
        self.assertTrue(stat.S_ISSOCK(st.st_mode), oct(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660, oct(st.st_mode))
        self.assertFalse(os.path.exists(self.api_socket + ".new"))
        self.assertEqual(self.health()["status"], "ok")
        self.stop_daemon()
        self.assertFalse(os.path.lexists(self.api_socket), "socket file left after a clean stop")

        # A socket file left by a killed daemon is replaced at the next start.
        d = self.start_daemon()
        self.kill_daemon()
        self.assertTrue(os.path.lexists(self.api_socket))
        d = self.start_daemon()
        self.assertEqual(self.health()["pid"], d.pid)

        # A second daemon (its own state dir) pointed at a socket a live daemon answers on
        # refuses to start instead of taking it over.
        other = self.path("other.yaml")
        self.write_config([self.check("app", self.app)], path=other,
                          state_dir=self.path("state2"), api={"socket": self.api_socket})
        second = self.start_daemon(other, wait_ready=False)
        self.assertEqual(second.proc.wait(timeout=TIMEOUT_S), 1, second.log())
        self.assertIn("another process is listening on it", second.log())
        self.assertEqual(self.health()["pid"], d.pid)
        self.stop_daemon(d)
        self.assertFalse(os.path.lexists(self.api_socket))

    def test_custom_socket_0600_and_how_the_cli_finds_it(self):
        sock = self.path("ctl.sock")
        d = self.start_one(api={"socket": sock, "socket_mode": "0600"})
        st = os.lstat(sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode), oct(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, oct(st.st_mode))
        self.assertFalse(os.path.lexists(self.api_socket), "no socket at the default place")
        self.assertEqual(self.api("GET", "/v1/health", socket_path=sock, expect=200).json["pid"], d.pid)

        no_env = {"GUARDIAN_SOCKET": None, "GUARDIAN_STATE_DIR": None}
        ways = {
            "--socket": (["--socket", sock], no_env),
            "GUARDIAN_SOCKET": ([], {"GUARDIAN_SOCKET": sock, "GUARDIAN_STATE_DIR": None}),
            "--config": (["--config", self.config_path], no_env),
        }
        for name, (args, env) in ways.items():
            with self.subTest(way=name):
                r = self.run_cli(*args, "status", "--json", state_dir=False, env=env)
                self.assertEqual(json.loads(self.assert_cli(r, 0))["pid"], d.pid)
        # GUARDIAN_SOCKET wins over --state-dir.
        r = self.run_cli("status", "--json", env={"GUARDIAN_SOCKET": sock})
        self.assertEqual(json.loads(self.assert_cli(r, 0))["pid"], d.pid)
        # --state-dir points at STATE/guardian.sock, where nothing listens: the CLI says so.
        r = self.run_cli("status", "--json", env=no_env)
        self.assert_cli(r, 3, NO_DAEMON_HINT, self.api_socket, stream="stderr")
        self.assertEqual(r.stdout, "")
        r = self.run_cli("--socket", self.path("elsewhere.sock"), "status", state_dir=False, env=no_env)
        self.assert_cli(r, 3, NO_DAEMON_HINT, stream="stderr")
        self.stop_daemon()
        self.assertFalse(os.path.lexists(sock))

    def test_socket_mode_granting_others_is_rejected(self):
        app, _ = self.make_app_file()
        for mode, ok in [("0666", False), ("0604", False), ("0661", False), ("0640", True),
                         ("0600", True), ("rw", False)]:
            with self.subTest(mode=mode):
                path = self.write_config([self.check("app", app)], api={"socket_mode": mode})
                for argv in ([GUARDIAND, "--check-config", path], [GUARDIAN, "check-config", path]):
                    r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
                    self.assertEqual(r.returncode, 0 if ok else 2, r.stderr)
                    if not ok:
                        self.assertRegex(r.stderr, r"(?m)^%s:\d+:\d+: api\.socket_mode: "
                                         % re.escape(path))
                if mode == "0666":
                    self.assertIn("others", r.stderr)
                    # The daemon refuses to start on it too, creating no socket.
                    d = self.start_daemon(wait_ready=False)
                    self.assertEqual(d.proc.wait(timeout=TIMEOUT_S), 2, d.log())
                    self.assertIn("api.socket_mode", d.log())
                    self.assertFalse(os.path.lexists(self.api_socket))


class BadRequestTest(ApiTestCase):

    def raw_exchange(self, data):
        """Sends `data` on a fresh connection and reads until the daemon closes it."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT_S)
            s.connect(self.api_socket)
            s.sendall(data)
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out
                out += chunk

    def test_bad_bodies_oversize_slowloris_and_idle_connections(self):
        self.start_one(api={"max_body_bytes": 1024, "request_timeout_ms": 1000})

        for body, needle in [("{", "not valid JSON"), ('{"reason": "x"', "not valid JSON"),
                             ("[1, 2]", "must be a JSON object"), ('"hold"', "must be a JSON object"),
                             ("null", "must be a JSON object"), ({"reason": ["x"]}, "wrong type"),
                             ({"reason": None}, "wrong type")]:
            with self.subTest(body=body):
                self.assert_error(self.api("POST", "/v1/checks/app/hold", body), 400, needle)
        for body, needle in [({"force": 1}, "'force' has the wrong type"),
                             ({"dry_run": "yes"}, "'dry_run' has the wrong type"),
                             ({"fast": True}, "unknown field 'fast'"), ("force=true", "not valid JSON")]:
            with self.subTest(body=body):
                self.assert_error(self.api("POST", "/v1/checks/app/run", body), 400, needle)
        self.assertIs(self.status_check("app")["held"], False)

        # Over api.max_body_bytes: 413, and the request is not acted on.
        big = {"reason": "x" * 2000}
        self.assert_error(self.api("POST", "/v1/checks/app/hold", big), 413, "1024")
        self.assertIs(self.status_check("app")["held"], False)
        # Declared too long: one 413, the connection closed, and the body never read as requests.
        smuggled = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n" * 40
        answer = self.raw_exchange(b"POST /v1/checks/app/hold HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: %d\r\n\r\n" % len(smuggled) + smuggled)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
        self.assertEqual(answer.count(b"HTTP/1.1 "), 1, answer)
        self.assertIn(b'"status":413', answer)
        # Chunked, no declared length: read and dropped past the limit, then 413.
        body = json.dumps({"reason": "z" * 3000}).encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 500]), body[i:i + 500])
                          for i in range(0, len(body), 500))
        answer = self.raw_exchange(b"POST /v1/checks/app/hold HTTP/1.1\r\nHost: x\r\n"
                                   b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                   + chunks + b"0\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
        self.assertIn(b'"message":"request body over 1024 bytes"', answer)
        self.assertIs(self.status_check("app")["held"], False)
        # Just under the limit is fine.
        r = self.api("POST", "/v1/checks/app/hold", {"reason": "y" * 900}, expect=200)
        self.assertEqual(self.status_check("app")["hold_reason"], "y" * 900, r)
        self.api("POST", "/v1/checks/app/release", expect=200)

        # Slowloris: a request line and headers dribbled in, then held open. Other clients are
        # answered meanwhile, and the slow connection is dropped once idle for request_timeout_ms.
        slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(slow.close)
        slow.connect(self.api_socket)
        for chunk in (b"GET /v1/hea", b"lth HTTP/1.1\r\n", b"Host: local", b"host\r\nX-Slow: 1"):
            slow.sendall(chunk)
            self.assertEqual(self.health(timeout=5)["status"], "ok")
            time.sleep(0.2)
        # Many idle connections that never send a byte.
        idle = []
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.addCleanup(s.close)
            s.connect(self.api_socket)
            idle.append(s)
        for _ in range(3):
            self.assertEqual(self.health(timeout=5)["status"], "ok")
        self.assertEqual(self.status()["checks"][0]["id"], "app")

        def closed_by_daemon(s, got):
            s.settimeout(0.02)
            try:
                data = s.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            got.append(data)
            return data == b""

        got = []
        self.wait_for(lambda: closed_by_daemon(slow, got), timeout=10,
                      what="the daemon to close the slow connection")
        self.assertNotIn(b"200 OK", b"".join(got), "a request that never ended was answered")
        pending = list(idle)

        def all_closed():
            for s in list(pending):
                if closed_by_daemon(s, []):
                    pending.remove(s)
            return not pending
        self.wait_for(all_closed, timeout=10, what="the daemon to close the idle connections")

        # A client that never goes idle, dripping a header byte every 200 ms, is cut off too:
        # a request must arrive whole within request_timeout_ms (1 s here), not only keep moving.
        drip = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(drip.close)
        drip.connect(self.api_socket)
        drip.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Drip: ")
        started = time.monotonic()
        cut_after = None
        while time.monotonic() - started < 10:
            try:
                drip.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                cut_after = time.monotonic() - started
                break
            if closed_by_daemon(drip, []):
                cut_after = time.monotonic() - started
                break
            time.sleep(0.2)
        self.assertIsNotNone(cut_after, "a client dripping its headers kept its connection 10 s")
        self.assertEqual(self.health()["status"], "ok")

        # Still serving, still healing, and it stops cleanly.
        self.assertEqual(self.health()["status"], "ok")
        self.break_and_heal("app", self.app)
        self.stop_daemon()


class ReloadTest(ApiTestCase):

    def test_reload_via_api(self):
        self.start_one()
        good = read_text(self.config_path)
        r = self.api("POST", "/v1/reload", expect=200).json
        self.assertEqual((r["reloaded"], r["checks"], r["mode"]), (True, 1, "act"))
        self.assertEqual((r["playbook_errors"], r["warnings"]), ([], []))

        # An unknown key at a known line: 422, each error naming file, line and column.
        bad_line = len(good.splitlines()) + 1
        write_atomic(self.config_path, good + "bogus_key: 1\n")
        r = self.api("POST", "/v1/reload")
        err = self.assert_error(r, 422, "reload rejected")
        self.assertEqual(len(err["errors"]), 1, r)
        self.assertTrue(err["errors"][0].startswith("%s:%d:1: " % (self.config_path, bad_line)), r)
        self.assertIn("unknown key 'bogus_key'", err["errors"][0])

        # A YAML syntax error: the same through the CLI, exit 2, errors on stderr.
        write_atomic(self.config_path, good + "checks: [ unterminated\n")
        for json_flag in ([], ["--json"]):
            r = self.run_cli("reload", *json_flag)
            self.assert_cli(r, 2, "reload rejected", stream="stderr")
            self.assertRegex(r.stderr, r"(?m)^  %s:\d+:\d+: " % re.escape(self.config_path))
            self.assertEqual(r.stdout, "")
        st = self.status()
        self.assertEqual(len(st["config_errors"]), 1, st)
        self.assertRegex(st["config_errors"][0], r"^%s:\d+:\d+: " % re.escape(self.config_path))
        self.assertEqual(self.health()["status"], "degraded")
        self.assert_cli(self.run_cli("status"), 0, "config errors", st["config_errors"][0])

        # The running config stays in effect and heals.
        self.break_and_heal("app", self.app)
        self.assertEqual([c["id"] for c in self.status()["checks"]], ["app"])

        # A good reload adding a check: it shows in status and the errors are gone.
        app2, _ = self.make_app_file("app2", content=GOOD_CONFIG.replace("8080", "8181"))
        self.write_config([self.check("app", self.app), self.check("app2", app2)])
        r = self.api("POST", "/v1/reload", expect=200).json
        self.assertEqual((r["reloaded"], r["checks"]), (True, 2))
        st = self.status()
        self.assertEqual(sorted(c["id"] for c in st["checks"]), ["app", "app2"])
        self.assertEqual(st["config_errors"], [])
        self.assertEqual(self.health()["status"], "ok")
        self.assertEqual(self.health()["checks"], 2)
        out = self.assert_cli(self.run_cli("status"), 0, "app2")
        self.assertNotIn("config errors", out)
        self.assert_cli(self.run_cli("reload"), 0, "reloaded: 2 checks")
        r = self.run_cli("reload", "--json")
        self.assertEqual(json.loads(self.assert_cli(r, 0))["checks"], 2)
        # An api change needs a restart: applied otherwise, with a warning.
        self.write_config([self.check("app", self.app), self.check("app2", app2)],
                          api={"socket_mode": "0600"})
        r = self.api("POST", "/v1/reload", expect=200).json
        self.assertEqual(len(r["warnings"]), 1, r)
        self.assertIn("api", r["warnings"][0])
        self.assertEqual(stat.S_IMODE(os.lstat(self.api_socket).st_mode), 0o660)
        self.stop_daemon()

    def test_sighup_bad_config_shows_in_status_until_fixed(self):
        self.start_one()
        good = read_text(self.config_path)
        write_atomic(self.config_path, good + "checks: [ unterminated\n")
        self.daemon.proc.send_signal(signal.SIGHUP)
        errors = self.wait_for(lambda: self.status()["config_errors"], what="config errors in status")
        for e in errors:
            self.assertRegex(e, r"^%s:\d+:\d+: " % re.escape(self.config_path))
        self.assert_cli(self.run_cli("status"), 0, "config errors (the previous version stays in use)",
                        errors[0])
        self.assertEqual(self.cli("status")["config_errors"], errors)
        self.break_and_heal("app", self.app)

        # Fixed and signalled again: the errors clear.
        write_atomic(self.config_path, good)
        self.daemon.proc.send_signal(signal.SIGHUP)
        self.wait_for(lambda: self.status()["config_errors"] == [], what="config errors to clear")
        self.assertEqual(self.health()["status"], "ok")
        self.assertNotIn("config errors", self.assert_cli(self.run_cli("status"), 0))
        self.stop_daemon()

    def test_broken_playbook_shows_in_status_and_the_previous_version_keeps_working(self):
        pb_dir = self.path("playbooks")
        os.makedirs(pb_dir)
        pb = os.path.join(pb_dir, "missing_config.lua")
        shutil.copy(os.path.join(REPO_PLAYBOOKS, "missing_config.lua"), pb)
        self.start_one(playbook_dirs=[pb_dir])
        original = read_text(pb)

        # A broken extra playbook: reported, and a reload still succeeds, listing it.
        extra = os.path.join(pb_dir, "extra.lua")
        write_atomic(extra, "local P = {name = 'extra', mode = 'missing_config'}\nreturn P P\n")
        errs = self.wait_for(lambda: self.status()["playbook_errors"], what="playbook errors in status")
        self.assertRegex(errs[0], r"^%s:2: " % re.escape(extra))
        r = self.api("POST", "/v1/reload", expect=200).json
        self.assertEqual(len(r["playbook_errors"]), 1, r)
        self.assertRegex(r["playbook_errors"][0], r"^%s:2: " % re.escape(extra))
        os.unlink(extra)
        self.wait_for(lambda: self.status()["playbook_errors"] == [], what="playbook errors to clear")

        # The check's own playbook edited into a syntax error at line 12.
        lines = original.splitlines(keepends=True)
        write_atomic(pb, "".join(lines[:11]) + "local broken = = 1\n" + "".join(lines[11:]))
        errs = self.wait_for(lambda: self.status()["playbook_errors"], what="playbook errors in status")
        self.assertEqual(len(errs), 1, errs)
        self.assertRegex(errs[0], r"^%s:12: " % re.escape(pb))
        self.assertEqual(self.health()["status"], "degraded")
        self.assert_cli(self.run_cli("status"), 0, "playbook errors (the previous version stays in use)",
                        "%s:12:" % pb)
        inc = self.incident(self.break_and_heal("app", self.app)["id"])
        self.assert_step(inc, "remediate", "ok")
        # A reload meanwhile is not refused for it: the previous version stays in use.
        r = self.api("POST", "/v1/reload", expect=200).json
        self.assertEqual(len(r["playbook_errors"]), 1, r)
        self.assertRegex(r["playbook_errors"][0], r"^%s:12: " % re.escape(pb))
        self.assertEqual(self.status()["config_errors"], [])
        inc = self.incident(self.break_and_heal("app", self.app, newer_than=inc["id"])["id"])
        self.assert_step(inc, "remediate", "ok")

        write_atomic(pb, original)
        self.wait_for(lambda: self.status()["playbook_errors"] == [], what="playbook errors to clear")
        self.assertEqual(self.health()["status"], "ok")
        self.stop_daemon()


    def test_incident_finishes_on_the_playbook_it_started_with(self):
        pb_dir = self.path("playbooks")
        os.makedirs(pb_dir)
        src = read_text(os.path.join(TEST_PLAYBOOKS, "slow_restore.lua"))
        self.assertIn('"restored " .. versions[1] .. " after a pause"', src)
        pb = os.path.join(pb_dir, "slow_restore.lua")
        write_atomic(pb, src.replace('" after a pause"', '" by version one"'))
        self.app, _ = self.make_app_file("app")
        self.write_config([self.check("app", self.app, playbook="slow_restore")],
                          playbook_dirs=[REPO_PLAYBOOKS, pb_dir])
        self.start_daemon()
        self.wait_version("app", GOOD_CONFIG)

        write_atomic(self.app, GARBAGE)
        # remediate sleeps 3 s: edit the playbook while it runs.
        self.wait_for(lambda: [i for i in self.incidents("app") if any(
            s["phase"] == "remediate" and s["status"] == "running" for s in i["steps"])],
            what="remediate to be running")
        write_atomic(pb, src.replace('" after a pause"', '" by version two"'))
        shipped = len([f for f in os.listdir(REPO_PLAYBOOKS) if f.endswith(".lua")])
        self.wait_log("playbook folders rescanned: %d playbooks, 0 errors" % (shipped + 1))
        first = self.wait_incident("app", timeout=LONG_TIMEOUT_S)
        self.assertEqual(first["state"], "resolved", first)
        self.assertIn("by version one", self.assert_step(first, "remediate")["message"])
        log = self.daemon.log()
        self.assertLess(log.index("playbook folders rescanned"),
                        log.index("incident %d (app): resolved" % first["id"]),
                        "the new version was installed only after the incident ended:\n" + log)

        # The next incident runs the edited version.
        self.wait_content(self.app, GOOD_CONFIG)
        write_atomic(self.app, GARBAGE)
        second = self.wait_incident("app", newer_than=first["id"], timeout=LONG_TIMEOUT_S)
        self.assertEqual(second["state"], "resolved", second)
        self.assertIn("by version two", self.assert_step(second, "remediate")["message"])
        self.stop_daemon()


class ObserveTest(ApiTestCase):

    def test_removing_a_check_ends_its_observed_incident(self):
        self.start_one(mode="observe")
        write_atomic(self.app, GARBAGE)
        inc = self.wait_incident("app", states=("open",))
        self.write_config([], mode="observe")
        self.api("POST", "/v1/reload", expect=200)
        # Not left open until a restart: it ends as no longer configured.
        done = self.wait_incident("app", states=("escalated", "resolved"), newer_than=inc["id"] - 1)
        self.assertIn("no longer configured", done["reason"], done)
        self.assertEqual(self.status()["open_incidents"], 0)
        self.stop_daemon()

    def test_observe_mode_records_without_acting(self):
        self.start_one(mode="observe")
        self.assertEqual(self.health()["mode"], "observe")
        self.assertEqual(self.status()["mode"], "observe")
        self.assertEqual(metric(self.metrics(), "guardian_observe_mode"), 1)
        self.assert_cli(self.run_cli("status"), 0, "mode observe")

        write_atomic(self.app, GARBAGE)
        inc = self.wait_incident("app", states=("open",))
        self.assert_stays(self.app, GARBAGE, 2.0)
        inc = self.incident(inc["id"])
        self.assertEqual(inc["state"], "open", inc)
        step = self.assert_step(inc, "observe", "skipped")
        self.assertIn("observe mode", step["message"])
        self.assertFalse([s for s in inc["steps"] if s["phase"] in ("backup", "remediate")], inc)
        self.assertEqual([i["id"] for i in self.api("GET", "/v1/incidents?state=open",
                                                    expect=200).json["incidents"]], [inc["id"]])
        self.assertEqual(self.health()["open_incidents"], 1)
        self.assert_error(self.api("POST", "/v1/checks/app/run", {}), 409, "observe mode")
        self.assert_cli(self.run_cli("run", "app"), 5, "observe mode", stream="stderr")
        # A dry run is allowed, and still changes nothing.
        r = self.api("POST", "/v1/checks/app/run", {"dry_run": True}, expect=200).json
        self.assertTrue(r["dry_run"])
        self.assertEqual(read_text(self.app), GARBAGE)

        # Fixed by hand: the incident resolves as recovered without action.
        write_atomic(self.app, GOOD_CONFIG)
        done = self.wait_incident("app")
        self.assertEqual((done["id"], done["state"]), (inc["id"], "resolved"))
        self.assertIn("recovered without action", done["reason"])
        self.assertFalse([s for s in self.incident(inc["id"])["steps"] if s["phase"] == "remediate"])

        # Broken again, then reloaded into act mode: the waiting incident is healed.
        write_atomic(self.app, GARBAGE)
        second = self.wait_incident("app", states=("open",), newer_than=inc["id"])
        self.assert_stays(self.app, GARBAGE, 0.5)
        self.write_config([self.check("app", self.app)], mode="act")
        r = self.api("POST", "/v1/reload", expect=200).json
        self.assertEqual(r["mode"], "act")
        self.wait_content(self.app, GOOD_CONFIG)
        healed = self.wait_incident("app", newer_than=inc["id"])
        self.assertEqual((healed["id"], healed["state"]), (second["id"], "resolved"))
        self.assert_step(self.incident(second["id"]), "remediate", "ok")
        self.assertEqual(self.health()["mode"], "act")
        self.assertEqual(metric(self.metrics(), "guardian_observe_mode"), 0)
        self.stop_daemon()


class CliTest(ApiTestCase):

    def test_every_command_readable_and_json(self):
        d = self.start_one()

        # status
        out = self.assert_cli(self.run_cli("status"), 0, "guardiand pid %d, mode act" % d.pid)
        self.assertRegex(out, r"(?m)^CHECK\s+MODE\s+STATE\s+HELD")
        self.assertRegex(out, r"(?m)^app\s+missing_config\s+ok\s+no\s+")
        st = self.cli("status")
        self.assertEqual((st["pid"], [c["id"] for c in st["checks"]]), (d.pid, ["app"]))

        inc = self.break_and_heal("app", self.app)
        n = inc["id"]

        # incidents
        out = self.assert_cli(self.run_cli("incidents"), 0)
        self.assertRegex(out, r"(?m)^ID\s+CHECK\s+MODE\s+STATE")
        self.assertRegex(out, r"(?m)^%d\s+app\s+missing_config\s+resolved\s" % n)
        self.assertEqual([i["id"] for i in self.cli("incidents")], [n])
        self.assertEqual(self.cli("incidents", "--check", "other"), [])
        self.assertEqual(self.cli("incidents", "--state", "escalated"), [])
        self.assertEqual([i["id"] for i in self.cli("incidents", "--state", "resolved", "--limit", "1",
                                                    "--mode", "missing_config")], [n])
        r = self.run_cli("incidents", "--mode", "not_a_mode")
        self.assert_cli(r, 1, "mode", stream="stderr")

        # incident ID
        out = self.assert_cli(self.run_cli("incident", str(n)), 0,
                              "incident %d  check app  mode missing_config  state resolved" % n)
        self.assertRegex(out, r"(?m)^\s+#1\s+remediate\s+ok\s")
        self.assertRegex(out, r"(?m)^\s+#1\s+probe\s+ok\s")
        self.assertEqual(self.cli("incident", str(n))["id"], n)
        for json_flag in ([], ["--json"]):
            r = self.run_cli("incident", str(n + 100), *json_flag)
            self.assert_cli(r, 4, "no incident %d" % (n + 100), stream="stderr")
            self.assertEqual(r.stdout, "")

        # mttr
        out = self.assert_cli(self.run_cli("mttr"), 0)
        self.assertRegex(out, r"(?m)^MODE\s+COUNT")
        self.assertRegex(out, r"(?m)^missing_config\s+1\s")
        row = self.cli("mttr")["modes"][0]
        self.assertEqual((row["mode"], row["count"], row["mttr_max_ms"]),
                         ("missing_config", 1, inc["mttr_ms"]))

        # hold, and what a hold refuses
        self.assert_cli(self.run_cli("hold", "app", "--reason", "cli test"), 0, "check app held: cli test")
        self.assert_cli(self.run_cli("status"), 0, "hold: cli test")
        self.assertRegex(self.run_cli("status").stdout, r"(?m)^app\s+missing_config\s+\S+\s+yes\s")
        r = self.cli("hold", "app", "--reason", "again")
        self.assertEqual(r, {"check": "app", "held": True, "reason": "again"})
        for json_flag in ([], ["--json"]):
            self.assert_cli(self.run_cli("run", "app", *json_flag), 5, "held", stream="stderr")
        self.assert_cli(self.run_cli("hold", "nope", "--reason", "x"), 4, "nope", stream="stderr")
        self.assert_cli(self.run_cli("hold", "app", "--reason", ""), 1, "non-empty", stream="stderr")

        # run --dry-run (allowed while held)
        out = self.assert_cli(self.run_cli("run", "app", "--dry-run"), 0,
                              "dry run of app (playbook missing_config): nothing was changed",
                              "would do:")
        self.assertRegex(out, r"(?m)^  remediate: ok")
        self.assertRegex(out, r"(?m)^  \[remediate\] \S*copy\(.*%s" % re.escape(self.app))
        r = self.cli("run", "app", "--dry-run")
        self.assertEqual((r["dry_run"], r["check"]), (True, "app"))
        self.assertEqual(read_text(self.app), GOOD_CONFIG)
        self.assertEqual(len(self.cli("incidents")), 1)

        # release
        self.assert_cli(self.run_cli("release", "app"), 0, "check app released")
        self.assertEqual(self.cli("release", "app"), {"check": "app", "held": False})
        self.assertIs(self.status_check("app")["held"], False)
        self.assert_cli(self.run_cli("release", "nope"), 4, stream="stderr")

        # run, healthy and forced
        self.assert_cli(self.run_cli("run", "app"), 0, "check app is healthy")
        self.assertEqual(self.cli("run", "app")["result"], "healthy")
        out = self.assert_cli(self.run_cli("run", "app", "--force"), 0, "check app: incident")
        forced = int(re.search(r"incident (\d+) opened", out).group(1))
        self.assertEqual(self.wait_incident("app", newer_than=n)["id"], forced)
        r = self.cli("run", "app", "--force")
        self.assertEqual(r["result"], "opened")
        self.assertEqual(self.wait_incident("app", newer_than=forced)["id"], r["incident"])
        self.assert_cli(self.run_cli("run", "nope"), 4, "nope", stream="stderr")

        # reload
        self.assert_cli(self.run_cli("reload"), 0, "reloaded: 1 checks")
        self.assertEqual(self.cli("reload")["reloaded"], True)

        # metrics (Prometheus text, no --json)
        out = self.assert_cli(self.run_cli("metrics"), 0)
        self.assertEqual(metric(out, "guardian_check_state", check="app", mode="missing_config",
                                state="ok"), 1)
        self.assertEqual(metric(out, "guardian_incidents_opened_total", mode="missing_config"), 3)

        # check-config and playbook lint need no daemon
        self.assert_cli(self.run_cli("check-config", self.config_path, state_dir=False), 0,
                        "%s: ok (1 checks" % self.config_path)
        bad = self.path("bad.yaml")
        with open(bad, "w") as f:
            f.write(read_text(self.config_path) + "bogus_key: 1\n")
        line = len(read_text(bad).splitlines())
        self.assert_cli(self.run_cli("check-config", bad, state_dir=False), 2,
                        "%s:%d:1: unknown key 'bogus_key'" % (bad, line), stream="stderr")
        pb = os.path.join(REPO_PLAYBOOKS, "missing_config.lua")
        self.assert_cli(self.run_cli("playbook", "lint", pb, state_dir=False), 0,
                        "%s: ok (missing_config, mode missing_config)" % pb)
        broken = self.path("broken.lua")
        lines = read_text(pb).splitlines(keepends=True)
        with open(broken, "w") as f:
            f.write("".join(lines[:4]) + "local = 1\n" + "".join(lines[4:]))
        self.assert_cli(self.run_cli("playbook", "lint", pb, broken, state_dir=False), 2,
                        "%s:5:" % broken, stream="stderr")

        # No daemon: every daemon command says so and how to start one; the store stays readable.
        self.stop_daemon()
        for cmd in (["status"], ["incidents"], ["incident", str(n)], ["mttr"],
                    ["hold", "app", "--reason", "x"], ["release", "app"], ["run", "app"],
                    ["run", "app", "--dry-run"], ["reload"], ["metrics"]):
            for json_flag in ([], ["--json"]) if cmd != ["metrics"] else ([],):
                with self.subTest(cmd=cmd + json_flag):
                    r = self.run_cli(*cmd, *json_flag)
                    self.assert_cli(r, 3, NO_DAEMON_HINT, stream="stderr")
                    self.assertEqual(r.stdout, "")
        self.assertEqual(len(self.cli("--offline", "incidents")), 3)
        self.assert_cli(self.run_cli("--offline", "incident", str(n)), 0, "incident %d  check app" % n)
        self.assertEqual(self.cli("--offline", "mttr")["modes"][0]["count"], 3)
        self.assert_cli(self.run_cli("--offline", "incident", str(n + 100)), 4, stream="stderr")
        self.assert_cli(self.run_cli("--offline", "status"), 1, "--offline", stream="stderr")


if __name__ == "__main__":
    unittest.main()
