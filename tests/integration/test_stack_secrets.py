"""Integration tests of the demo stack's credentials: what `chaos/stack/seed` writes to
DIR/secrets/ and what `chaos/inject invalid_credentials` does to a real auth server.

The seed tests run the real script into a temp dir and check the files, their modes, that the
key files match the auth server's clients file, that a second run changes nothing and that no
secret is ever printed. The injector tests start a real `chaos/stack/upstream auth` on a free
port with the seeded clients file, name it in a minimal DIR/stack/run/ports.json, run the real
injector for each kind and judge its effect through the auth server's own token endpoint (a
client_credentials grant with each key file, a refresh_token grant, GET /v1/whoami), then undo
it. No secret or token may reach the injector's output, and the injector writes no file.
The contract is docs/demo-stack.md, "The stack's layout", "secrets/" and "Credential faults".
Stdlib only; every wait is bounded; every process started here is stopped in cleanup.
"""

import hashlib
import json
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("GUARDIAN_SOURCE") or os.path.join(HERE, "..", "..")
SEED = os.path.join(SOURCE, "chaos", "stack", "seed")
INJECT = os.path.join(SOURCE, "chaos", "inject")
UPSTREAM = os.path.join(SOURCE, "chaos", "stack", "upstream")

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
RUN_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 10.0

SEEDED = ("clients.json", "app-primary.key", "app-backup.key")
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{32}$")  # 24 bytes, URL-safe base64, no padding


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def tree(root):
    """{relative path: (sha256, mode)} of every file under root."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            p = os.path.join(folder, name)
            out[os.path.relpath(p, root)] = (hashlib.sha256(read_bytes(p)).hexdigest(), mode_of(p))
    return out


def post_form(url, fields):
    """(status, JSON body) of a form POST; an HTTP error status is an answer too."""
    req = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(), method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read() or b"{}")


def get_status(url, token):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
            return r.status
    except urllib.error.HTTPError as e:
        with e:
            return e.code


class SecretsTestCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        for exe in (SEED, INJECT, UPSTREAM):
            if not os.access(exe, os.X_OK):
                self.fail("%s is missing or not executable" % exe)
        self.tmp = tempfile.mkdtemp(prefix="stack-secrets-it-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.known = []  # every secret and token this test saw: none may be printed

    def seed(self, stack):
        r = subprocess.run([SEED, stack], capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def secrets_of(self, stack):
        """The seeded files, parsed: (clients.json's clients, primary key, backup key)."""
        folder = os.path.join(stack, "secrets")
        clients = read_json(os.path.join(folder, "clients.json"))["clients"]
        primary = read_json(os.path.join(folder, "app-primary.key"))
        backup = read_json(os.path.join(folder, "app-backup.key"))
        self.known += [c["secret"] for c in clients.values()]
        self.known += [primary["client_secret"], backup["client_secret"]]
        return clients, primary, backup

    def assertNoSecretIn(self, text, what):
        # the failure message names neither the secret nor the text: a test log is a log too
        leaked = sum(1 for s in self.known if s in text)
        if leaked:
            self.fail("%d secret(s) or token(s) reached %s" % (leaked, what))


class SeedTest(SecretsTestCase):

    def assertSeededSecrets(self, stack):
        folder = os.path.join(stack, "secrets")
        self.assertEqual(mode_of(folder), 0o700)
        self.assertEqual(sorted(os.listdir(folder)), sorted(SEEDED))  # no token.json, no tmp
        for name in SEEDED:
            path = os.path.join(folder, name)
            self.assertTrue(stat.S_ISREG(os.lstat(path).st_mode), name)
            self.assertEqual(mode_of(path), 0o600, name)
        clients, primary, backup = self.secrets_of(stack)
        self.assertEqual(set(clients), {"app", "app-backup"})
        for c in clients.values():
            self.assertEqual(set(c), {"secret"})
            self.assertRegex(c["secret"], SECRET_RE)
        self.assertEqual(primary, {"client_id": "app", "client_secret": clients["app"]["secret"]})
        self.assertEqual(backup, {"client_id": "app-backup",
                                  "client_secret": clients["app-backup"]["secret"]})
        self.assertNotEqual(primary["client_secret"], backup["client_secret"])
        return clients

    def test_seed_writes_the_secrets_with_their_modes_and_matching_keys(self):
        stack = os.path.join(self.tmp, "stack")
        r = self.seed(stack)
        self.assertSeededSecrets(stack)
        self.assertNoSecretIn(r.stdout + r.stderr, "the seed's output")
        # the app's token file is Guardian's, in secrets/; the seed only points app.yaml at it
        with open(os.path.join(stack, "app", "app.yaml"), encoding="utf-8") as f:
            app_yaml = f.read()
        self.assertRegex(app_yaml, r"(?m)^upstreams:\n(  \S.*\n)*  token_file: \.\./secrets/token\.json$")
        self.assertFalse(os.path.exists(os.path.join(stack, "secrets", "token.json")))
        for d in ("app", "data", "logs", "snapshots", "run", "tmp"):
            self.assertTrue(os.path.isdir(os.path.join(stack, d)), d)

    def test_a_second_seed_changes_nothing(self):
        stack = os.path.join(self.tmp, "stack")
        self.seed(stack)
        folder = os.path.join(stack, "secrets")
        before = {n: (read_bytes(os.path.join(folder, n)), os.stat(os.path.join(folder, n)))
                  for n in SEEDED}
        self.secrets_of(stack)
        r = self.seed(stack)
        self.assertNoSecretIn(r.stdout + r.stderr, "the second seed's output")
        self.assertEqual(sorted(os.listdir(folder)), sorted(SEEDED))
        for name, (content, st) in before.items():
            path = os.path.join(folder, name)
            self.assertEqual(read_bytes(path), content, name)
            now = os.stat(path)
            self.assertEqual((now.st_ino, now.st_mtime_ns, now.st_mode),
                             (st.st_ino, st.st_mtime_ns, st.st_mode), name)
        self.assertEqual(mode_of(folder), 0o700)

    def test_each_stack_gets_fresh_secrets(self):
        a, b = os.path.join(self.tmp, "a"), os.path.join(self.tmp, "b")
        self.seed(a)
        self.seed(b)
        ca, cb = self.assertSeededSecrets(a), self.assertSeededSecrets(b)
        self.assertFalse({c["secret"] for c in ca.values()} & {c["secret"] for c in cb.values()})

    def test_a_missing_or_empty_file_makes_all_three_again(self):
        stack = os.path.join(self.tmp, "stack")
        self.seed(stack)
        folder = os.path.join(stack, "secrets")
        for name, how in (("app-backup.key", "remove"), ("clients.json", "remove"),
                          ("app-primary.key", "empty")):
            old = self.assertSeededSecrets(stack)
            path = os.path.join(folder, name)
            if how == "remove":
                os.remove(path)
            else:
                open(path, "w").close()
            r = self.seed(stack)
            self.assertNoSecretIn(r.stdout + r.stderr, "the seed's output")
            new = self.assertSeededSecrets(stack)  # consistent again, modes again
            self.assertFalse({c["secret"] for c in old.values()} &
                             {c["secret"] for c in new.values()}, "%s %s: secrets reused"
                             % (how, name))

    def test_a_loose_secrets_folder_is_made_0700(self):
        stack = os.path.join(self.tmp, "stack")
        os.makedirs(os.path.join(stack, "secrets"))
        os.chmod(os.path.join(stack, "secrets"), 0o755)
        self.seed(stack)
        self.assertSeededSecrets(stack)


class InjectTest(SecretsTestCase):

    def setUp(self):
        super().setUp()
        self.state = os.path.join(self.tmp, "state")
        self.stack = os.path.join(self.state, "stack")
        self.seed(self.stack)
        self.clients, primary, backup = self.secrets_of(self.stack)
        self.keys = {"primary": primary, "backup": backup}
        self.key_bytes = {n: read_bytes(os.path.join(self.stack, "secrets", n)) for n in SEEDED}
        # the auth server's log goes outside the state dir, so the injector's files can be told
        self.logs = tempfile.mkdtemp(prefix="stack-secrets-log-")
        self.addCleanup(shutil.rmtree, self.logs, ignore_errors=True)
        self.auth = None
        self.addCleanup(self.stop_auth)
        self.start_auth()

    def start_auth(self):
        self.log_path = os.path.join(self.logs, "auth.log")
        self.log_file = open(self.log_path, "ab")
        self.auth = subprocess.Popen(
            [UPSTREAM, "auth", "--port", "0", "--clients",
             os.path.join(self.stack, "secrets", "clients.json"), "--ttl-s", "3600"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log_file)
        ready, _, _ = select.select([self.auth.stdout], [], [], START_TIMEOUT_S)
        line = self.auth.stdout.readline() if ready else b""
        if not line:
            self.stop_auth()
            self.fail("the auth server did not start: %s" % self.auth_log())
        self.port = json.loads(line)["listening"]
        self.base = "http://127.0.0.1:%d" % self.port
        with open(os.path.join(self.stack, "run", "ports.json"), "w", encoding="utf-8") as f:
            json.dump({"services": {"auth": {"port": self.port, "preferred": self.port}}}, f)

    def stop_auth(self):
        if self.auth is None:
            return
        if self.auth.poll() is None:
            self.auth.send_signal(signal.SIGTERM)
            try:
                self.auth.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.auth.kill()
                self.auth.wait()
        self.auth.stdout.close()
        self.log_file.close()
        self.auth = None

    def auth_log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    # -- the auth server, as a client of it sees it ------------------------------------------

    def grant(self, which):
        """A client_credentials grant with a key file: (status, answer)."""
        key = self.keys[which]
        status, doc = post_form(self.base + "/oauth/token",
                                {"grant_type": "client_credentials",
                                 "client_id": key["client_id"],
                                 "client_secret": key["client_secret"]})
        if status == 200:
            self.known += [doc["access_token"], doc["refresh_token"]]
        return status, doc

    def refresh(self, refresh_token):
        status, doc = post_form(self.base + "/oauth/token",
                                {"grant_type": "refresh_token", "refresh_token": refresh_token})
        if status == 200:
            self.known += [doc["access_token"], doc["refresh_token"]]
        return status, doc

    def whoami(self, token):
        return get_status(self.base + "/v1/whoami", token)

    def assertGrants(self, primary, backup):
        """Each key file's client_credentials grant answers as expected (200 or 401)."""
        for which, want in (("primary", primary), ("backup", backup)):
            status, doc = self.grant(which)
            self.assertEqual(status, want, "%s key: %r" % (which, doc))
            if want == 401:
                self.assertEqual(doc, {"error": "invalid_client"})

    # -- the injector ------------------------------------------------------------------------

    def run_inject(self, *args):
        r = subprocess.run([sys.executable, INJECT, "invalid_credentials", "--state-dir",
                            self.state] + list(args), capture_output=True, text=True,
                           timeout=RUN_TIMEOUT_S, stdin=subprocess.DEVNULL)
        self.assertNoSecretIn(r.stdout + r.stderr, "the injector's output")
        return r

    def inject(self, *args):
        """Runs the injector; checks it printed one JSON line and no secret, and wrote no file."""
        before = tree(self.state)
        t0 = int(time.time() * 1000)
        r = self.run_inject(*args)
        t1 = int(time.time() * 1000)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 1, r.stdout)
        out = json.loads(lines[0])
        self.assertEqual(tree(self.state), before, "the injector changed or wrote a file")
        self.assertEqual(out["mode"], "invalid_credentials")
        if "--undo" not in args:
            self.assertLessEqual(t0, out["onset_at"])
            self.assertLessEqual(out["onset_at"], t1)
        return out

    def assertOutput(self, out, kind, clients):
        self.assertEqual(out, {"mode": "invalid_credentials", "kind": kind, "port": self.port,
                               "onset_at": out["onset_at"], "clients": clients})

    def undo(self):
        out = self.inject("--undo")
        self.assertEqual(out, {"mode": "invalid_credentials", "undone": True, "port": self.port,
                               "clients": ["app", "app-backup"]})
        self.assertGrants(200, 200)
        return out

    def assertKeyFilesUnchanged(self):
        for name, content in self.key_bytes.items():
            self.assertEqual(read_bytes(os.path.join(self.stack, "secrets", name)), content, name)

    def tearDown(self):
        # the auth server never logs a secret or a token either
        if self.auth is not None:
            self.assertNoSecretIn(self.auth_log(), "the auth server's log")

    # -- the kinds ---------------------------------------------------------------------------

    def test_expire_ends_access_tokens_and_the_refresh_still_works(self):
        status, tok = self.grant("primary")
        self.assertEqual(status, 200)
        self.assertEqual(self.whoami(tok["access_token"]), 200)
        out = self.inject("--kind", "expire")
        self.assertOutput(out, "expire", ["app", "app-backup"])
        self.assertEqual(self.whoami(tok["access_token"]), 401)
        status, new = self.refresh(tok["refresh_token"])
        self.assertEqual(status, 200, new)
        self.assertEqual(self.whoami(new["access_token"]), 200)
        self.assertGrants(200, 200)
        self.undo()
        self.assertKeyFilesUnchanged()

    def test_revoke_ends_every_token_and_the_keys_still_work(self):
        status, tok = self.grant("primary")
        self.assertEqual(status, 200)
        out = self.inject("--kind", "revoke")
        self.assertOutput(out, "revoke", ["app", "app-backup"])
        self.assertEqual(self.whoami(tok["access_token"]), 401)
        self.assertEqual(self.refresh(tok["refresh_token"]), (400, {"error": "invalid_grant"}))
        self.assertGrants(200, 200)
        self.undo()
        self.assertKeyFilesUnchanged()

    def test_rotate_leaves_only_the_backup_key(self):
        status, tok = self.grant("primary")
        self.assertEqual(status, 200)
        out = self.inject("--kind", "rotate")
        self.assertOutput(out, "rotate", ["app"])
        self.assertEqual(self.whoami(tok["access_token"]), 401)
        self.assertEqual(self.refresh(tok["refresh_token"]), (400, {"error": "invalid_grant"}))
        self.assertGrants(401, 200)
        self.assertKeyFilesUnchanged()  # the new secret is written nowhere
        self.undo()
        self.assertKeyFilesUnchanged()

    def test_lockout_leaves_nothing_until_undone(self):
        status, tok = self.grant("backup")
        self.assertEqual(status, 200)
        out = self.inject("--kind", "lockout")
        self.assertOutput(out, "lockout", ["app", "app-backup"])
        self.assertEqual(self.whoami(tok["access_token"]), 401)
        self.assertEqual(self.refresh(tok["refresh_token"]), (400, {"error": "invalid_grant"}))
        self.assertGrants(401, 401)
        self.assertKeyFilesUnchanged()
        self.undo()
        self.assertKeyFilesUnchanged()
        # twice is harmless
        self.undo()

    def test_the_default_kind_is_expire(self):
        self.assertOutput(self.inject(), "expire", ["app", "app-backup"])

    def test_undo_follows_the_key_files(self):
        """An operator's new credentials: the key file names a new secret; --undo makes it the
        client's secret at the auth server (what rotate did is replaced either way)."""
        self.inject("--kind", "rotate")
        path = os.path.join(self.stack, "secrets", "app-primary.key")
        new_secret = "operator-provided-" + os.urandom(8).hex()
        self.known.append(new_secret)
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"client_id": "app", "client_secret": new_secret}, f)
        self.keys["primary"]["client_secret"] = new_secret
        self.assertGrants(401, 200)
        self.inject("--undo")
        self.assertGrants(200, 200)

    # -- errors ------------------------------------------------------------------------------

    def test_an_unknown_kind_is_refused(self):
        r = self.run_inject("--kind", "sideways")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown kind", r.stderr)

    def test_no_auth_in_the_port_registry_is_a_clean_error(self):
        with open(os.path.join(self.stack, "run", "ports.json"), "w", encoding="utf-8") as f:
            json.dump({"services": {"app": {"port": 8080}}}, f)
        for args in (("--kind", "rotate"), ("--undo",)):
            r = self.run_inject(*args)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn('no port for service "auth"', r.stderr)
            self.assertNotIn("Traceback", r.stderr)
        self.assertGrants(200, 200)

    def test_an_auth_server_that_is_down(self):
        self.stop_auth()
        r = self.run_inject("--kind", "lockout")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("cannot be reached", r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        self.assertEqual(r.stdout, "")
        # undo: nothing of the fault is left in a stopped server
        out = self.inject("--undo")
        self.assertEqual(out["undone"], True)
        self.assertIn("cannot be reached", out["note"])


if __name__ == "__main__":
    unittest.main()
