"""Integration tests of the demo stack's upstream services (chaos/stack/upstream).

Each test starts the real script as its own process with `--port 0`, reads the JSON line it
prints when ready, and drives it over HTTP: the api's modes (hang really holds a request until
the mode changes), the auth server's OAuth2 flows (refresh rotation, expiry, revocation, secret
changes, a failing refresh endpoint), the Ollama stand-in's shapes, and a clean SIGTERM. The
server's stderr goes to a file, so a test can check that no token or secret was ever logged.
The contract under test is docs/demo-stack.md, "Upstream services". Stdlib only; every wait is
bounded and no test asserts an upper bound on timing.
"""

import base64
import datetime
import json
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("GUARDIAN_SOURCE") or os.path.join(HERE, "..", "..")
UPSTREAM = os.path.join(SOURCE, "chaos", "stack", "upstream")

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
TIMEOUT_S = 10.0       # an answer that should come
HUNG_TIMEOUT_S = 0.3   # a client giving up on a hung server
POLL_S = 0.05


class Reply:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Reply(%d, %r)" % (self.status, self.body[:300])


def request(url, method="GET", body=None, headers=None, timeout=TIMEOUT_S):
    """One HTTP request; a non-2xx status is a Reply too (never an exception)."""
    data = body
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        data = body.encode()
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Reply(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        with e:
            return Reply(e.code, e.headers, e.read())


def times_out(url, method="GET", body=None, timeout=HUNG_TIMEOUT_S):
    """True when the server accepts the request but gives no answer within timeout."""
    try:
        request(url, method, body, timeout=timeout)
    except (TimeoutError, socket.timeout):
        return True
    except urllib.error.URLError as e:
        if isinstance(e.reason, (TimeoutError, socket.timeout)):
            return True
        raise
    return False


class Server:
    """One running `upstream KIND ...` process, its port, and its stderr log file."""

    def __init__(self, test, kind, *args):
        self.log_path = os.path.join(test.tmp, "%s-%d.log" % (kind, len(test.servers)))
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen([UPSTREAM, kind, "--port", "0", *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log_file)
        test.servers.append(self)
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            test.fail("%s did not start: %s" % (kind, self.log()))
        self.hello = json.loads(line)
        self.port = self.hello["listening"]
        self.base = "http://127.0.0.1:%d" % self.port

    def url(self, path):
        return self.base + path

    def get(self, path, **kw):
        return request(self.url(path), **kw)

    def post(self, path, body=None, **kw):
        return request(self.url(path), "POST", body if body is not None else b"", **kw)

    def log(self):
        self.log_file.flush()
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def signal(self, sig):
        self.proc.send_signal(sig)
        return self.proc.wait(STOP_TIMEOUT_S)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log_file.close()


class UpstreamTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        if not os.access(UPSTREAM, os.X_OK):
            self.fail("%s is missing or not executable" % UPSTREAM)
        self.tmp = tempfile.mkdtemp(prefix="upstream-it-")
        self.servers = []
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        for s in self.servers:
            s.stop()
        for name in os.listdir(self.tmp):
            os.remove(os.path.join(self.tmp, name))
        os.rmdir(self.tmp)

    def start(self, kind, *args):
        return Server(self, kind, *args)

    def assertJson(self, reply, expected_status, **fields):
        """reply has this status, a JSON Content-Type and (at least) these fields."""
        self.assertEqual(reply.status, expected_status, reply)
        self.assertEqual(reply.headers.get_content_type(), "application/json", reply)
        doc = reply.json()
        for k, v in fields.items():
            self.assertEqual(doc.get(k), v, "%s in %r" % (k, doc))
        return doc

    def wait_for(self, what, fn, timeout=TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while True:
            v = fn()
            if v:
                return v
            if time.monotonic() > deadline:
                self.fail("timed out waiting for " + what)
            time.sleep(POLL_S)

    def in_thread(self, fn):
        """Runs fn on a thread; returns a holder whose "result" (or "error") is set at its end."""
        out = {}

        def run():
            try:
                out["result"] = fn()
            except Exception as e:  # reported by the test that joins it
                out["error"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        out["thread"] = t
        return out


def price(item):
    return round((item * 37 % 1000) / 10, 2)


class ApiTest(UpstreamTest):

    def test_ready_line_health_and_quote(self):
        s = self.start("api", "--name", "primary")
        self.assertEqual(s.hello["kind"], "api")
        self.assertEqual(s.hello["pid"], s.proc.pid)
        self.assertGreater(s.port, 0)
        self.assertJson(s.get("/healthz"), 200, ok=True, name="primary", mode="ok")
        for item in (0, 5, 27, 1234):
            self.assertJson(s.get("/v1/quote?item=%d" % item), 200,
                            item=item, price=price(item), served_by="primary")
        self.assertIn("error", self.assertJson(s.get("/v1/quote"), 400))
        self.assertIn("error", self.assertJson(s.get("/v1/quote?item=abc"), 400))
        self.assertJson(s.get("/nope"), 404, error="not found")
        r = s.post("/healthz")
        self.assertJson(r, 405)
        self.assertIn("GET", r.headers["Allow"])
        st = self.assertJson(s.get("/control/state"), 200, name="primary", mode="ok",
                             delay_ms=0, requests=9)
        self.assertEqual(st["by_path"], {"/healthz": 2, "/v1/quote": 6})

    def test_slow_adds_the_delay_to_quotes_only(self):
        s = self.start("api", "--name", "backup", "--mode", "slow", "--delay-ms", "300")
        t0 = time.monotonic()
        self.assertJson(s.get("/v1/quote?item=3"), 200, item=3, served_by="backup")
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertJson(s.get("/healthz"), 200, ok=True, mode="slow")
        self.assertJson(s.post("/control/mode", {"mode": "slow", "delay_ms": 500}), 200,
                        mode="slow", delay_ms=500)
        t0 = time.monotonic()
        self.assertJson(s.get("/v1/quote?item=4"), 200, item=4)
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)

    def test_fail_answers_the_status_and_health_stays_up(self):
        s = self.start("api", "--name", "primary", "--mode", "fail")
        self.assertJson(s.get("/v1/quote?item=1"), 503, error="upstream failing")
        self.assertJson(s.get("/healthz"), 200, ok=True, mode="fail")
        self.assertJson(s.post("/control/mode", {"status": 500}), 200, mode="fail", status=500)
        self.assertJson(s.get("/v1/quote?item=1"), 500, error="upstream failing")
        self.assertJson(s.post("/control/mode", {"mode": "ok"}), 200, mode="ok")
        self.assertJson(s.get("/v1/quote?item=1"), 200, item=1, price=price(1))
        s2 = self.start("api", "--name", "other", "--mode", "fail", "--status", "502")
        self.assertJson(s2.get("/v1/quote?item=1"), 502, error="upstream failing")

    def test_hang_holds_requests_until_the_mode_changes(self):
        s = self.start("api", "--name", "primary")
        self.assertJson(s.post("/control/mode", {"mode": "hang"}), 200, mode="hang")
        self.assertTrue(times_out(s.url("/v1/quote?item=2")))
        self.assertTrue(times_out(s.url("/healthz")))
        # control answers at once in every mode
        self.assertJson(s.get("/control/state"), 200, mode="hang")
        before = s.get("/control/state").json()["requests"]
        held = self.in_thread(lambda: s.get("/v1/quote?item=7"))
        self.wait_for("the held request to arrive",
                      lambda: s.get("/control/state").json()["requests"] > before)
        time.sleep(0.2)
        self.assertNotIn("result", held, "a hung server answered")
        self.assertJson(s.post("/control/mode", {"mode": "ok"}), 200, mode="ok")
        held["thread"].join(TIMEOUT_S)
        self.assertNotIn("error", held)
        self.assertJson(held["result"], 200, item=7, price=price(7), served_by="primary")
        self.assertJson(s.get("/healthz"), 200, mode="ok")

    def test_bad_control_calls_are_refused(self):
        s = self.start("api", "--name", "primary")
        self.assertIn("error", self.assertJson(s.post("/control/mode", {"mode": "sideways"}), 400))
        self.assertIn("error", self.assertJson(s.post("/control/mode", {"delay_ms": -1}), 400))
        self.assertIn("error", self.assertJson(s.post("/control/mode", {"status": 200}), 400))
        self.assertIn("error", self.assertJson(s.post("/control/mode", "{not json"), 400))
        self.assertJson(s.get("/control/state"), 200, mode="ok", delay_ms=0)

    def test_sigterm_and_sigint_exit_0_also_with_a_held_request(self):
        s = self.start("api", "--name", "primary", "--mode", "hang")
        held = self.in_thread(lambda: s.get("/v1/quote?item=1"))
        self.wait_for("the held request to arrive",
                      lambda: s.get("/control/state").json()["requests"] >= 1)
        self.assertEqual(s.signal(signal.SIGTERM), 0, s.log())
        held["thread"].join(TIMEOUT_S)
        self.assertNotIn("result", held, "the held request was answered at stop")
        s2 = self.start("api", "--name", "backup")
        self.assertEqual(s2.signal(signal.SIGINT), 0, s2.log())

    def test_log_has_one_line_per_request(self):
        s = self.start("api", "--name", "primary")
        s.get("/v1/quote?item=11")
        s.get("/nope")
        self.assertEqual(s.signal(signal.SIGTERM), 0)
        log = s.log()
        self.assertRegex(log, r"GET /v1/quote 200 \d+ms")
        self.assertRegex(log, r"GET /nope 404 \d+ms")
        self.assertNotIn("item=11", log)

    def test_bad_command_line_exits_2_and_a_taken_port_exits_3(self):
        r = subprocess.run([UPSTREAM, "api", "--port", "0"], capture_output=True,
                           timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 2)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            r = subprocess.run([UPSTREAM, "api", "--port", str(sock.getsockname()[1]),
                                "--name", "x"], capture_output=True, timeout=TIMEOUT_S)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertEqual(r.stdout, b"")


CLIENTS = {"app": "s1-the-primary-secret", "app-backup": "s2-the-backup-secret"}


class AuthTest(UpstreamTest):

    def setUp(self):
        super().setUp()
        self.clients_file = os.path.join(self.tmp, "clients.json")
        with open(self.clients_file, "w", encoding="utf-8") as f:
            json.dump({"clients": {k: {"secret": v} for k, v in CLIENTS.items()}}, f)
        self.seen = []  # every token and secret the test handled, none may reach the log

    def start_auth(self, *args):
        return self.start("auth", "--clients", self.clients_file, *args)

    def token(self, s, form=None, as_json=False, headers=None):
        body = (json.dumps(form) if as_json else urllib.parse.urlencode(form or {})).encode()
        hdrs = {"Content-Type": "application/json" if as_json
                else "application/x-www-form-urlencoded"}
        hdrs.update(headers or {})
        r = s.post("/oauth/token", body, headers=hdrs)
        if r.status == 200:
            doc = r.json()
            self.seen += [doc["access_token"], doc["refresh_token"]]
        return r

    def client_credentials(self, s, client="app", secret=None):
        r = self.token(s, {"grant_type": "client_credentials", "client_id": client,
                           "client_secret": secret or CLIENTS[client]})
        return self.assertJson(r, 200)

    def whoami(self, s, token):
        return s.get("/v1/whoami", headers={"Authorization": "Bearer " + token})

    def assertInvalidToken(self, reply):
        self.assertJson(reply, 401, error="invalid_token")
        self.assertEqual(reply.headers["WWW-Authenticate"], 'Bearer error="invalid_token"')

    def assertNothingSecretLogged(self, s):
        log = s.log()
        self.assertIn("POST /oauth/token 200", log)
        for needle in self.seen + list(CLIENTS.values()):
            self.assertNotIn(needle, log)

    def test_client_credentials_form_json_and_basic(self):
        s = self.start_auth("--ttl-s", "60")
        self.assertEqual(s.hello["kind"], "auth")
        t0 = int(time.time() * 1000)
        doc = self.client_credentials(s)
        self.assertEqual(set(doc), {"access_token", "token_type", "expires_in", "refresh_token"})
        self.assertEqual(doc["token_type"], "Bearer")
        self.assertEqual(doc["expires_in"], 60)
        self.assertGreaterEqual(len(doc["access_token"]), 32)
        self.assertNotEqual(doc["access_token"], doc["refresh_token"])
        me = self.assertJson(self.whoami(s, doc["access_token"]), 200, client_id="app")
        self.assertGreaterEqual(me["expires_at"], t0 + 60_000)
        self.assertLessEqual(me["expires_at"], int(time.time() * 1000) + 60_000)

        r = self.token(s, {"grant_type": "client_credentials", "client_id": "app-backup",
                           "client_secret": CLIENTS["app-backup"]}, as_json=True)
        doc2 = self.assertJson(r, 200, token_type="Bearer")
        self.assertJson(self.whoami(s, doc2["access_token"]), 200, client_id="app-backup")

        basic = base64.b64encode(b"app:" + CLIENTS["app"].encode()).decode()
        self.seen.append(basic)
        r = self.token(s, {"grant_type": "client_credentials"},
                       headers={"Authorization": "Basic " + basic})
        doc3 = self.assertJson(r, 200, token_type="Bearer")
        self.assertEqual(r.headers["Cache-Control"], "no-store")
        self.assertJson(self.whoami(s, doc3["access_token"]), 200, client_id="app")
        st = self.assertJson(s.get("/control/state"), 200, issued=3, refreshed=0,
                             active_access_tokens=3, active_refresh_tokens=3, refresh_mode="ok")
        for needle in self.seen:
            self.assertNotIn(needle, json.dumps(st))
        self.assertEqual(s.signal(signal.SIGTERM), 0)
        self.assertNothingSecretLogged(s)

    def test_token_errors(self):
        s = self.start_auth()
        cases = [
            ({"grant_type": "client_credentials", "client_id": "app", "client_secret": "wrong"},
             401, "invalid_client"),
            ({"grant_type": "client_credentials", "client_id": "ghost", "client_secret": "x"},
             401, "invalid_client"),
            ({"grant_type": "client_credentials", "client_id": "app"}, 400, "invalid_request"),
            ({"grant_type": "client_credentials"}, 400, "invalid_request"),
            ({"client_id": "app", "client_secret": CLIENTS["app"]}, 400, "invalid_request"),
            ({"grant_type": "refresh_token"}, 400, "invalid_request"),
            ({"grant_type": "refresh_token", "refresh_token": "bogus"}, 400, "invalid_grant"),
            ({"grant_type": "password", "username": "u", "password": "p"},
             400, "unsupported_grant_type"),
        ]
        for form, status, error in cases:
            with self.subTest(form=form):
                self.assertJson(self.token(s, form), status, error=error)
        wrong = base64.b64encode(b"app:wrong").decode()
        r = self.token(s, {"grant_type": "client_credentials"},
                       headers={"Authorization": "Basic " + wrong})
        self.assertJson(r, 401, error="invalid_client")
        self.assertIn("Basic", r.headers["WWW-Authenticate"])
        r = s.post("/oauth/token", "{broken", headers={"Content-Type": "application/json"})
        self.assertJson(r, 400, error="invalid_request")
        self.assertJson(s.get("/control/state"), 200, issued=0)

    def test_whoami_refuses_missing_and_unknown_tokens(self):
        s = self.start_auth()
        self.assertInvalidToken(s.get("/v1/whoami"))
        self.assertInvalidToken(self.whoami(s, "not-a-token"))
        doc = self.client_credentials(s)
        self.assertInvalidToken(s.get("/v1/whoami",
                                      headers={"Authorization": "Basic " + doc["access_token"]}))
        self.assertInvalidToken(self.whoami(s, doc["refresh_token"]))
        # a token in the query string is not accepted, and the query is never logged
        self.assertInvalidToken(s.get("/v1/whoami?access_token=" + doc["access_token"]))
        self.assertEqual(s.signal(signal.SIGTERM), 0)
        self.assertIn("GET /v1/whoami 401", s.log())
        for needle in self.seen:
            self.assertNotIn(needle, s.log())

    def test_refresh_rotates_the_refresh_token(self):
        s = self.start_auth()
        first = self.client_credentials(s)
        r = self.token(s, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                           "client_id": "app"})
        second = self.assertJson(r, 200, token_type="Bearer", expires_in=60)
        self.assertNotEqual(second["access_token"], first["access_token"])
        self.assertNotEqual(second["refresh_token"], first["refresh_token"])
        self.assertJson(self.whoami(s, second["access_token"]), 200, client_id="app")
        # the spent refresh token is refused, the new one works (also without client_id)
        r = self.token(s, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                           "client_id": "app"})
        self.assertJson(r, 400, error="invalid_grant")
        r = self.token(s, {"grant_type": "refresh_token",
                           "refresh_token": second["refresh_token"]})
        third = self.assertJson(r, 200)
        # another client cannot use app's refresh token
        r = self.token(s, {"grant_type": "refresh_token", "refresh_token": third["refresh_token"],
                           "client_id": "app-backup"})
        self.assertJson(r, 400, error="invalid_grant")
        self.assertJson(s.get("/control/state"), 200, issued=3, refreshed=2,
                        active_refresh_tokens=1)
        self.assertEqual(s.signal(signal.SIGTERM), 0)
        self.assertNothingSecretLogged(s)

    def test_expire_then_refresh_recovers(self):
        s = self.start_auth()
        doc = self.client_credentials(s)
        self.assertJson(s.post("/control/expire"), 200, expired=1)
        self.assertInvalidToken(self.whoami(s, doc["access_token"]))
        self.assertJson(s.get("/control/state"), 200, active_access_tokens=0)
        r = self.token(s, {"grant_type": "refresh_token", "refresh_token": doc["refresh_token"],
                           "client_id": "app"})
        fresh = self.assertJson(r, 200)
        self.assertJson(self.whoami(s, fresh["access_token"]), 200, client_id="app")

    def test_tokens_expire_after_ttl(self):
        s = self.start_auth("--ttl-s", "1")
        doc = self.client_credentials(s)
        self.assertEqual(doc["expires_in"], 1)
        self.assertJson(self.whoami(s, doc["access_token"]), 200)
        self.wait_for("the token to expire",
                      lambda: self.whoami(s, doc["access_token"]).status == 401)
        self.assertInvalidToken(self.whoami(s, doc["access_token"]))

    def test_revoke_kills_access_and_refresh_tokens(self):
        s = self.start_auth()
        doc = self.client_credentials(s)
        self.assertJson(s.post("/control/revoke"), 200)
        self.assertInvalidToken(self.whoami(s, doc["access_token"]))
        r = self.token(s, {"grant_type": "refresh_token", "refresh_token": doc["refresh_token"],
                           "client_id": "app"})
        self.assertJson(r, 400, error="invalid_grant")
        self.assertJson(s.get("/control/state"), 200, active_access_tokens=0,
                        active_refresh_tokens=0)
        self.client_credentials(s)  # the clients still work

    def test_secret_change_refuses_the_old_secret(self):
        s = self.start_auth()
        new_secret = "s3-rotated-secret"
        self.seen.append(new_secret)
        self.assertJson(s.post("/control/secret", {"client_id": "app", "secret": new_secret}),
                        200, client_id="app")
        r = self.token(s, {"grant_type": "client_credentials", "client_id": "app",
                           "client_secret": CLIENTS["app"]})
        self.assertJson(r, 401, error="invalid_client")
        self.client_credentials(s, "app", new_secret)
        self.client_credentials(s, "app-backup")  # other clients untouched
        self.assertJson(s.post("/control/secret", {"client_id": "ghost", "secret": "x"}), 404)
        self.assertJson(s.post("/control/secret", {"client_id": "app"}), 400)
        self.assertEqual(s.signal(signal.SIGTERM), 0)
        self.assertNothingSecretLogged(s)

    def test_refresh_outage_answers_503_and_keeps_the_token(self):
        s = self.start_auth()
        doc = self.client_credentials(s)
        self.assertJson(s.post("/control/refresh", {"mode": "fail"}), 200, refresh_mode="fail")
        form = {"grant_type": "refresh_token", "refresh_token": doc["refresh_token"],
                "client_id": "app"}
        self.assertJson(self.token(s, form), 503, error="temporarily_unavailable")
        self.client_credentials(s)  # only the refresh grant is down
        self.assertJson(s.post("/control/refresh", {"mode": "ok"}), 200, refresh_mode="ok")
        self.assertJson(self.token(s, form), 200)
        self.assertJson(s.post("/control/refresh", {"mode": "maybe"}), 400)

    def test_an_api_checks_bearer_tokens_with_the_auth_server(self):
        auth = self.start_auth()
        api = self.start("api", "--name", "primary", "--auth-url", auth.base)
        self.assertInvalidToken(api.get("/v1/quote?item=1"))
        token = self.client_credentials(auth)["access_token"]
        self.seen.append(token)
        bearer = {"Authorization": "Bearer " + token}
        self.assertJson(api.get("/v1/quote?item=1", headers=bearer), 200, served_by="primary")
        self.assertJson(auth.post("/control/expire"), 200)
        r = api.get("/v1/quote?item=1", headers=bearer)
        self.assertInvalidToken(r)
        self.assertEqual(r.headers.get("WWW-Authenticate"), 'Bearer error="invalid_token"')
        for secret in self.seen:
            self.assertNotIn(secret, api.log())

    def test_bad_clients_file_exits_2(self):
        bad = os.path.join(self.tmp, "bad.json")
        with open(bad, "w", encoding="utf-8") as f:
            f.write('{"clients": {"app": {}}}')
        for path in (bad, os.path.join(self.tmp, "missing.json")):
            r = subprocess.run([UPSTREAM, "auth", "--port", "0", "--clients", path],
                               capture_output=True, timeout=TIMEOUT_S)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(path.encode(), r.stderr)


RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
STAT_FIELDS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
               "eval_count", "eval_duration")


def parse_rfc3339(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


class ModelTest(UpstreamTest):

    def generate(self, s, model="llama3.2:1b", stream=False, **extra):
        body = {"model": model, "prompt": "Say ok", "options": {"num_predict": 1}}
        if stream is not None:
            body["stream"] = stream
        body.update(extra)
        return s.post("/api/generate", body)

    def test_root_version_and_tags(self):
        s = self.start("model", "--models", "llama3.2:1b,qwen2.5:0.5b,tinyllama")
        self.assertEqual(s.hello["kind"], "model")
        r = s.get("/")
        self.assertEqual((r.status, r.body), (200, b"Ollama is running"))
        self.assertJson(s.get("/api/version"), 200, version="0.5.7")
        tags = self.assertJson(s.get("/api/tags"), 200)
        self.assertEqual([m["name"] for m in tags["models"]],
                         ["llama3.2:1b", "qwen2.5:0.5b", "tinyllama:latest"])
        for m in tags["models"]:
            self.assertEqual(set(m), {"name", "model", "modified_at", "size", "digest", "details"})
            self.assertEqual(m["model"], m["name"])
            self.assertRegex(m["modified_at"], RFC3339)
            parse_rfc3339(m["modified_at"])
            self.assertRegex(m["digest"], r"^[0-9a-f]{64}$")
            self.assertIsInstance(m["size"], int)
            self.assertGreater(m["size"], 0)
            d = m["details"]
            self.assertEqual(set(d), {"parent_model", "format", "family", "families",
                                      "parameter_size", "quantization_level"})
            self.assertEqual((d["parent_model"], d["format"]), ("", "gguf"))
            self.assertIn(d["family"], d["families"])
        self.assertEqual(tags["models"][0]["details"]["parameter_size"], "1B")
        self.assertEqual(tags["models"][0]["details"]["family"], "llama")
        self.assertJson(s.get("/api/ps"), 200, models=[])
        self.assertJson(s.get("/api/nope"), 404, error="not found")

    def test_generate_non_stream_and_load_duration_on_first_call_only(self):
        s = self.start("model", "--load-ms", "300")
        t0 = time.monotonic()
        first = self.assertJson(self.generate(s), 200, model="llama3.2:1b", response="ok",
                                done=True, done_reason="stop", context=[], eval_count=1)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertRegex(first["created_at"], RFC3339)
        for k in STAT_FIELDS:
            self.assertIsInstance(first[k], int, k)
        self.assertGreaterEqual(first["load_duration"], 300_000_000)
        self.assertGreaterEqual(first["total_duration"], first["load_duration"])
        self.assertGreaterEqual(first["prompt_eval_count"], 1)
        second = self.assertJson(self.generate(s), 200, done=True)
        self.assertLess(second["load_duration"], 300_000_000)

        ps = self.assertJson(s.get("/api/ps"), 200)["models"]
        self.assertEqual([m["name"] for m in ps], ["llama3.2:1b"])
        self.assertRegex(ps[0]["expires_at"], RFC3339)
        self.assertGreater(parse_rfc3339(ps[0]["expires_at"]),
                           datetime.datetime.now(datetime.timezone.utc))
        self.assertEqual(ps[0]["size_vram"], ps[0]["size"])
        self.assertEqual(ps[0]["details"]["format"], "gguf")

        # after an unload the next generate loads again
        self.assertJson(s.post("/control/unload"), 200, unloaded=["llama3.2:1b"])
        self.assertJson(s.get("/api/ps"), 200, models=[])
        third = self.assertJson(self.generate(s), 200)
        self.assertGreaterEqual(third["load_duration"], 300_000_000)

    def test_generate_streams_ndjson_by_default(self):
        s = self.start("model", "--models", "llama3.2:1b,tinyllama")
        for stream in (None, True):
            with self.subTest(stream=stream):
                r = self.generate(s, "tinyllama", stream=stream)
                self.assertEqual(r.status, 200)
                self.assertEqual(r.headers.get_content_type(), "application/x-ndjson")
                self.assertTrue(r.body.endswith(b"\n"))
                lines = [json.loads(x) for x in r.body.splitlines()]
                self.assertEqual(len(lines), 2, r.body)
                self.assertEqual(lines[0]["model"], "tinyllama")
                self.assertEqual((lines[0]["response"], lines[0]["done"]), ("ok", False))
                self.assertRegex(lines[0]["created_at"], RFC3339)
                last = lines[1]
                self.assertIs(last["done"], True)
                self.assertEqual(last["done_reason"], "stop")
                for k in STAT_FIELDS:
                    self.assertIsInstance(last[k], int, k)
                self.assertEqual(last["eval_count"], 1)

    def test_generate_errors_and_empty_prompt_load(self):
        s = self.start("model")
        self.assertJson(self.generate(s, "mistral:7b"), 404,
                        error='model "mistral:7b" not found, try pulling it first')
        self.assertJson(s.post("/api/generate", {"prompt": "hi", "stream": False}), 400,
                        error="model is required")
        self.assertIn("error", self.assertJson(s.post("/api/generate", "{oops"), 400))
        self.assertJson(s.get("/api/generate"), 405)
        self.assertJson(s.post("/api/generate", {"model": "llama3.2:1b", "stream": False}), 200,
                        response="", done=True, done_reason="load")
        self.assertEqual(len(s.get("/api/ps").json()["models"]), 1)

    def test_modes(self):
        s = self.start("model", "--mode", "slow", "--delay-ms", "300")
        t0 = time.monotonic()
        self.assertJson(s.get("/api/tags"), 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        t0 = time.monotonic()
        self.assertJson(self.generate(s), 200, done=True)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertEqual(s.get("/").status, 200)

        self.assertJson(s.post("/control/mode", {"mode": "error"}), 200, mode="error")
        killed = "llama runner process has terminated: signal: killed"
        self.assertJson(self.generate(s), 500, error=killed)
        self.assertJson(s.get("/api/tags"), 500, error=killed)

        self.assertJson(s.post("/control/mode", {"mode": "hang"}), 200, mode="hang")
        self.assertTrue(times_out(s.url("/api/tags")))
        self.assertTrue(times_out(s.url("/")))
        before = s.get("/control/state").json()["requests"]
        held = self.in_thread(lambda: self.generate(s))
        self.wait_for("the held generate to arrive",
                      lambda: s.get("/control/state").json()["requests"] > before)
        st = self.assertJson(s.post("/control/mode", {"mode": "ok", "delay_ms": 0}), 200,
                             mode="ok", delay_ms=0)
        self.assertGreater(st["by_path"]["/api/generate"], 1)
        held["thread"].join(TIMEOUT_S)
        self.assertNotIn("error", held)
        self.assertJson(held["result"], 200, response="ok", done=True)

    def test_sigterm_exits_0(self):
        s = self.start("model", "--load-ms", "5000")
        loading = self.in_thread(lambda: self.generate(s))
        self.wait_for("the generate to arrive",
                      lambda: s.get("/control/state").json()["requests"] >= 1)
        self.assertEqual(s.signal(signal.SIGTERM), 0, s.log())
        loading["thread"].join(TIMEOUT_S)
        self.assertNotIn("result", loading)


if __name__ == "__main__":
    unittest.main()
