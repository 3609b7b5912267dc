"""Integration tests of the demo app (chaos/stack/app), the service Guardian's demo stack heals.

Each test runs the real `demo-app` binary in a fresh temp dir with its own config and a free
loopback port, and breaks things for real: a port already taken, pages of the database
overwritten, memory allocated and shed, the log renamed away. The contract under test is
docs/demo-stack.md. Every wait is bounded (50 ms polls, generous timeouts for the ASan build).
"""

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import unittest

import harness

DEMO_APP = os.path.join(harness.BIN, "demo-app")
UPSTREAM = os.path.join(harness.SOURCE, "chaos", "stack", "upstream")
POLL_S = harness.POLL_S
TIMEOUT_S = harness.TIMEOUT_S
MIB = 1 << 20
DEFAULT_CHUNKS = ["listen", "database", "cache_warm", "search_index", "plugins"]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fnv1a64_checksum(db_path):
    """The documented /items checksum, computed from the file with Python's sqlite3."""
    h = 0xCBF29CE484222325
    with sqlite3.connect(db_path) as conn:
        for item_id, body in conn.execute("SELECT id, body FROM items ORDER BY id"):
            for byte in ("%d:%s\n" % (item_id, body)).encode("utf-8"):
                h ^= byte
                h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def rss_bytes(pid):
    with open("/proc/%d/status" % pid, encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


class DemoAppTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        if not os.access(DEMO_APP, os.X_OK):
            self.fail("%s is not built (set GUARDIAN_BIN or build the demo-app target)" % DEMO_APP)
        self.tmp = tempfile.mkdtemp(prefix="demo-app-it-")
        self.port = free_port()
        self.procs = []
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            p.out.close()
        if os.environ.get("GUARDIAN_KEEP_TMP"):
            print("kept", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- files ---------------------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def write_config(self, **sections):
        """app.yaml with this test's port, small boot delays and `sections` merged on top."""
        cfg = {
            "server": {"port": self.port, "workers": 2},
            "database": {"seed_rows": 50},
            "cache": {"warm_mb": 2},
        }
        for key, value in sections.items():
            cfg.setdefault(key, {}).update(value)
        with open(self.path("app.yaml"), "w", encoding="utf-8") as f:
            f.write(harness.to_yaml(cfg))
        return self.path("app.yaml")

    def status_file(self, runtime="run"):
        try:
            with open(self.path(runtime, "status.json"), encoding="utf-8") as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def write_flags(self, flags):
        os.makedirs(self.path("run"), exist_ok=True)
        text = flags if isinstance(flags, str) else json.dumps(flags)
        harness.write_atomic(self.path("run", "flags.json"), text)

    def app_log(self):
        return harness.read_or_none(self.path("logs", "app.log")) or ""

    # --- the process ---------------------------------------------------------------------

    def start(self, *extra, wait_ready=True):
        out = open(self.path("demo-app-%d.out" % len(self.procs)), "w+b")
        p = subprocess.Popen([DEMO_APP, "--config", self.path("app.yaml")] + list(extra),
                             stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        p.out = out
        self.procs.append(p)
        if wait_ready:
            self.wait_state(p, "ready")
        return p

    def output(self, p):
        p.out.flush()
        p.out.seek(0)
        return p.out.read().decode("utf-8", "replace")

    def diagnostics(self):
        st = self.status_file()
        return "\n--- status.json ---\n%s\n--- app.log tail ---\n%s" % (
            json.dumps(st, indent=1)[:3000] if st else None,
            "\n".join(self.app_log().splitlines()[-25:]))

    def wait_for(self, fn, what, timeout=TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value:
                return value
            if time.monotonic() > deadline:
                self.fail("timed out after %.0f s waiting for %s%s" % (timeout, what,
                                                                       self.diagnostics()))
            time.sleep(POLL_S)

    def wait_status(self, p, pred, what, timeout=TIMEOUT_S):
        """The first status.json written by `p` for which pred(status) holds."""
        def check():
            st = self.status_file()
            if st is not None and st.get("pid") == p.pid and pred(st):
                return st
            if p.poll() is not None:
                self.fail("demo-app exited with %s while waiting for %s\n%s%s"
                          % (p.returncode, what, self.output(p), self.diagnostics()))
            return None
        return self.wait_for(check, what, timeout)

    def wait_state(self, p, state, timeout=TIMEOUT_S):
        return self.wait_status(p, lambda st: st["state"] == state, "state %s" % state, timeout)

    def wait_exit(self, p, timeout):
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail("demo-app did not exit within %.1f s%s" % (timeout, self.diagnostics()))

    def stop(self, p):
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(p, TIMEOUT_S), 0, self.output(p))

    def http(self, method, path, body=None, port=None):
        return harness.http_request(method, path, body=body,
                                    host_port="127.0.0.1:%d" % (port or self.port))

    def expect(self, method, path, status, body=None, port=None):
        r = self.http(method, path, body=body, port=port)
        if r.status != status:
            self.fail("%s %s: HTTP %d (wanted %d): %s%s" % (method, path, r.status, status,
                                                            r.text, self.diagnostics()))
        self.assertEqual(r.headers.get("content-type"), "application/json")
        return r.json

    # --- tests ---------------------------------------------------------------------------

    def test_boot_reports_chunks_and_serves_items(self):
        self.write_config()
        p = self.start()
        st = self.status_file()
        self.assertEqual([c["name"] for c in st["boot"]["chunks"]], DEFAULT_CHUNKS)
        previous_end = st["boot"]["started_at"]
        for c in st["boot"]["chunks"]:
            self.assertFalse(c["skipped"], c)
            self.assertLessEqual(previous_end, c["started_at"], c)
            self.assertLessEqual(c["started_at"], c["ended_at"], c)
            self.assertEqual(c["ms"], c["ended_at"] - c["started_at"])
            previous_end = c["ended_at"]
        self.assertEqual([c["critical"] for c in st["boot"]["chunks"]],
                         [True, True, False, False, False])
        self.assertGreaterEqual(st["boot"]["chunks"][1]["ms"], 20)  # the database chunk's delay
        self.assertLessEqual(previous_end, st["boot"]["ready_at"])
        self.assertIsNone(st["boot"]["current"])
        self.assertEqual(st["port"], self.port)
        self.assertEqual(st["exe"], os.path.realpath(DEMO_APP))
        self.assertFalse(st["degraded"])
        self.assertEqual(st["memory"]["cache_bytes"], 2 * MIB)
        self.assertEqual(st["db"]["path"], self.path("data", "app.db"))

        self.assertEqual(self.expect("GET", "/healthz", 200), {"status": "ok", "state": "ready"})
        self.assertEqual(self.expect("GET", "/readyz", 200), {"ready": True})
        items = self.expect("GET", "/items", 200)
        self.assertEqual(items["count"], 50)
        self.assertEqual(items["checksum"], fnv1a64_checksum(self.path("data", "app.db")))

        created = self.expect("POST", "/items", 201, body={"body": "zulu yankee"})
        got = self.expect("GET", "/items/%d" % created["id"], 200)
        self.assertEqual(got["body"], "zulu yankee")
        after = self.expect("GET", "/items", 200)
        self.assertEqual(after["count"], 51)
        self.assertNotEqual(after["checksum"], items["checksum"])
        self.assertEqual(after["checksum"], fnv1a64_checksum(self.path("data", "app.db")))
        self.assertIn(created["id"], self.expect("GET", "/search?q=yankee", 200)["ids"])
        self.assertEqual(self.expect("GET", "/search?q=alpha", 200)["ids"][:2], [15, 18])

        live = self.expect("GET", "/status", 200)
        self.assertGreater(live["memory"]["rss_bytes"], 1 * MIB)
        self.wait_status(p, lambda s: s["db"]["rows"] == 51, "db.rows 51 (periodic check)")

        snap = self.expect("POST", "/control/snapshot", 200)
        self.assertEqual(os.path.dirname(snap["path"]), self.path("snapshots"))
        with open(snap["path"], encoding="utf-8") as f:
            doc = json.load(f)
        self.assertEqual((doc["count"], len(doc["items"]), snap["items"]), (51, 51, 51))
        self.assertEqual(doc["items"][-1]["body"], "zulu yankee")
        self.assertEqual(os.listdir(self.path("snapshots")), [os.path.basename(snap["path"])])

        # The HTTP edges: unknown item and path, wrong method, bad JSON, oversize body.
        self.expect("GET", "/items/999999", 404)
        self.expect("GET", "/nope", 404)
        self.assertEqual(self.http("DELETE", "/items").status, 405)
        self.assertIn("JSON", self.expect("POST", "/items", 400, body="{not json")["error"])
        self.expect("POST", "/items", 400, body={"body": 5})
        self.expect("POST", "/items", 413, body={"body": "x" * (70 * 1024)})
        self.assertIn("POST /items: created item %d" % created["id"], self.app_log())
        self.stop(p)

    def test_readiness_during_a_slow_boot(self):
        self.write_config()
        os.makedirs(self.path("run"))
        with open(self.path("run", "faults.json"), "w", encoding="utf-8") as f:
            json.dump({"chunk_delay_ms": {"search_index": 1500}}, f)
        p = self.start(wait_ready=False)
        st = self.wait_status(p, lambda s: s["boot"]["current"] == "search_index",
                              "boot.current == search_index")
        self.assertEqual(st["state"], "booting")
        self.assertEqual(self.expect("GET", "/healthz", 200)["state"], "booting")
        self.assertEqual(self.expect("GET", "/readyz", 503),
                         {"ready": False, "reason": "booting: search_index"})
        st = self.wait_state(p, "ready")
        chunk = [c for c in st["boot"]["chunks"] if c["name"] == "search_index"][0]
        self.assertGreaterEqual(chunk["ms"], 1500)
        self.expect("GET", "/readyz", 200)
        self.stop(p)

    def test_flags_skip_degrade_and_refuse(self):
        self.write_config()
        p = self.start()
        self.write_flags({"seq": 1, "skip_chunks": ["search_index"]})
        st = self.wait_status(p, lambda s: s["flags"]["seq"] == 1, "flags.seq 1")
        self.assertEqual(st["flags"]["skip_chunks"], ["search_index"])
        self.assertIsNone(st["flags"]["error"])
        self.expect("GET", "/search?q=alpha", 200)  # skip_chunks waits for the next boot
        self.stop(p)

        p = self.start()
        st = self.status_file()
        chunk = [c for c in st["boot"]["chunks"] if c["name"] == "search_index"][0]
        self.assertTrue(chunk["skipped"])
        self.assertIsNone(chunk["started_at"])
        self.assertTrue(st["degraded"])
        self.assertEqual(self.expect("GET", "/search?q=alpha", 503),
                         {"error": "feature degraded: search"})

        # Live flags apply within milliseconds; the critical chunk cannot be skipped.
        t0 = time.monotonic()
        self.write_flags({"seq": 2, "skip_chunks": ["database", "plugins"],
                          "degraded_features": ["search"], "low_memory": True,
                          "active_upstream": "backup"})
        st = self.wait_status(p, lambda s: s["flags"]["seq"] == 2, "flags.seq 2")
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertIn("database", st["flags"]["error"])
        self.assertIn("critical", st["flags"]["error"])
        self.assertEqual(st["flags"]["skip_chunks"], ["plugins"])
        self.assertEqual(st["flags"]["degraded_features"], ["search"])
        self.assertEqual(st["flags"]["active_upstream"], "backup")
        self.assertTrue(st["flags"]["low_memory"])
        self.assertTrue(st["memory"]["low_memory"])
        self.assertEqual(st["memory"]["cache_bytes"], 0)  # shed at once

        # A bad file keeps the flags in force and says what is wrong.
        self.write_flags("{not json")
        st = self.wait_status(p, lambda s: "not valid JSON" in (s["flags"]["error"] or ""),
                              "flags.error for unparsable flags.json")
        self.assertIn("flags.json", st["flags"]["error"])
        self.assertEqual(st["flags"]["seq"], 2)
        self.assertEqual(st["flags"]["degraded_features"], ["search"])
        self.write_flags({"seq": 3, "low_memory": "yes"})
        st = self.wait_status(p, lambda s: "low_memory" in (s["flags"]["error"] or ""),
                              "flags.error for a wrongly typed low_memory")
        self.assertEqual(st["flags"]["seq"], 2)
        self.assertTrue(st["flags"]["low_memory"])

        # Next boot: database still runs, cache_warm is skipped in low-memory mode.
        self.write_flags({"seq": 4, "skip_chunks": ["database"], "low_memory": True})
        self.wait_status(p, lambda s: s["flags"]["seq"] == 4, "flags.seq 4")
        self.stop(p)
        p = self.start()
        st = self.status_file()
        chunks = {c["name"]: c for c in st["boot"]["chunks"]}
        self.assertFalse(chunks["database"]["skipped"])
        self.assertIsNotNone(chunks["database"]["ended_at"])
        self.assertTrue(chunks["cache_warm"]["skipped"])
        self.assertFalse(chunks["search_index"]["skipped"])
        self.assertIn("database", st["flags"]["error"])
        self.assertEqual(st["memory"]["cache_bytes"], 0)
        self.expect("GET", "/readyz", 200)

        # Low-memory off lifts the cap and clears the error; nothing is re-warmed.
        self.write_flags({"seq": 5})
        st = self.wait_status(p, lambda s: s["flags"]["seq"] == 5, "flags.seq 5")
        self.assertIsNone(st["flags"]["error"])
        self.assertFalse(st["memory"]["low_memory"])
        self.assertEqual(st["memory"]["cache_bytes"], 0)
        self.assertTrue(st["degraded"])  # cache_warm was skipped at this boot
        self.stop(p)

    def test_memory_allocate_shed_leak_and_cap(self):
        self.write_config(cache={"warm_mb": 0})
        p = self.start()
        rss0 = rss_bytes(p.pid)
        r = self.expect("POST", "/control/allocate", 200, body={"mb": 64, "kind": "cache"})
        self.assertEqual(r, {"cache_bytes": 64 * MIB, "leak_bytes": 0})
        self.wait_status(p, lambda s: s["memory"]["cache_bytes"] == 64 * MIB, "cache_bytes 64 MiB")
        rss1 = rss_bytes(p.pid)
        self.assertGreater(rss1 - rss0, 50 * MIB, "RSS %d -> %d" % (rss0, rss1))

        p.send_signal(signal.SIGUSR1)
        self.wait_status(p, lambda s: s["memory"]["cache_bytes"] == 0, "cache shed by SIGUSR1")
        self.wait_for(lambda: rss1 - rss_bytes(p.pid) > 50 * MIB, "RSS to drop after shedding")

        self.expect("POST", "/control/allocate", 200, body={"mb": 4})
        r = self.expect("POST", "/control/allocate", 200, body={"mb": 8, "kind": "leak"})
        self.assertEqual(r, {"cache_bytes": 4 * MIB, "leak_bytes": 8 * MIB})
        self.assertEqual(self.expect("POST", "/control/shed-caches", 200),
                         {"freed_bytes": 4 * MIB})
        st = self.wait_status(p, lambda s: s["memory"]["cache_bytes"] == 0, "cache shed")
        self.assertEqual(st["memory"]["leak_bytes"], 8 * MIB)  # a leak survives shedding
        r = self.expect("POST", "/control/release", 200)
        self.assertEqual((r["freed_bytes"], r["leak_bytes"]), (8 * MIB, 0))

        self.expect("POST", "/control/allocate", 400, body={"mb": 5000})
        self.expect("POST", "/control/allocate", 400, body={"mb": 1, "kind": "heap"})

        self.write_flags({"seq": 1, "low_memory": True})
        self.wait_status(p, lambda s: s["memory"]["low_memory"], "low-memory mode")
        self.expect("POST", "/control/allocate", 200, body={"mb": 1})  # the cap is 1 MiB
        r = self.expect("POST", "/control/allocate", 507, body={"mb": 1})
        self.assertEqual(r["error"], "low-memory mode: cache capped at 1 MiB")
        self.assertEqual(r["cache_bytes"], 1 * MIB)
        self.expect("POST", "/control/allocate", 200, body={"mb": 2, "kind": "leak"})
        self.stop(p)

    def test_port_conflict_and_registry(self):
        self.write_config()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
            squatter.bind(("127.0.0.1", self.port))
            squatter.listen(1)
            p = self.start(wait_ready=False)
            self.assertEqual(self.wait_exit(p, TIMEOUT_S), 3, self.output(p))
        st = self.status_file()
        self.assertEqual(st["pid"], p.pid)
        self.assertEqual(st["state"], "failed")
        self.assertEqual(st["bind"]["error"], "EADDRINUSE")
        self.assertEqual(st["bind"]["port"], self.port)
        self.assertIn("EADDRINUSE", self.output(p))

        other = free_port()
        with open(self.path("run", "ports.json"), "w", encoding="utf-8") as f:
            json.dump({"services": {"app": {"port": other, "preferred": self.port,
                                            "range": [other, other]}}}, f)
        p = self.start()
        self.assertEqual(self.status_file()["port"], other)
        self.expect("GET", "/healthz", 200, port=other)

        # A stale second instance (--runtime-dir, --port) fails without touching our files.
        stale = self.start("--runtime-dir", self.path("stale"), "--port", str(other),
                           wait_ready=False)
        self.assertEqual(self.wait_exit(stale, TIMEOUT_S), 3, self.output(stale))
        stale_status = self.status_file("stale")
        self.assertEqual((stale_status["pid"], stale_status["state"]), (stale.pid, "failed"))
        self.assertEqual(stale_status["bind"]["error"], "EADDRINUSE")
        self.assertEqual(stale_status["bind"]["port"], other)
        self.assertEqual(self.status_file()["pid"], p.pid)
        self.assertEqual(self.status_file()["state"], "ready")
        self.stop(p)

    def test_database_corruption_is_reported(self):
        self.write_config(database={"seed_rows": 2000})
        db = self.path("data", "app.db")
        p = self.start()
        self.stop(p)
        self.assertFalse(os.path.exists(db + "-wal"), "a clean stop checkpoints the WAL")
        pages = os.path.getsize(db) // 4096
        self.assertGreater(pages, 10)
        with open(db, "r+b") as f:
            f.seek(pages // 2 * 4096)
            f.write(b"\xff" * 4096)

        p = self.start()
        st = self.wait_status(p, lambda s: s["db"]["errors"] > 0, "db.errors > 0")
        self.assertIn(st["db"]["last_error"]["code"], ("SQLITE_CORRUPT", "SQLITE_NOTADB"))
        self.assertFalse(st["db"]["ok"])
        reason = self.expect("GET", "/readyz", 503)["reason"]
        self.assertTrue(reason.startswith("database: SQLITE_CORRUPT"), reason)
        self.assertEqual(self.expect("GET", "/items", 503)["code"], "SQLITE_CORRUPT")
        self.expect("GET", "/healthz", 200)
        self.assertIn("SQLITE_CORRUPT", self.app_log())
        # The maintenance thread keeps reading, so the count keeps growing without traffic.
        errors = self.expect("GET", "/status", 200)["db"]["errors"]
        self.wait_for(lambda: self.expect("GET", "/status", 200)["db"]["errors"] > errors,
                      "more db errors from the periodic check")
        self.stop(p)

        with open(db, "r+b") as f:
            f.write(b"\0" * 100)
        p = self.start()
        st = self.wait_status(p, lambda s: s["db"]["errors"] > 0, "db.errors > 0")
        self.assertEqual(st["db"]["last_error"]["code"], "SQLITE_NOTADB")
        self.assertIn("database: SQLITE_NOTADB", self.expect("GET", "/readyz", 503)["reason"])
        self.stop(p)

    def test_reopen_db_and_sighup_pick_up_a_replaced_file(self):
        self.write_config(database={"seed_rows": 30})
        db = self.path("data", "app.db")
        p = self.start()

        def replace_with(rows):
            good = self.path("good-%d.db" % rows)
            with sqlite3.connect(good) as src:
                src.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT NOT NULL, "
                            "created_at INTEGER NOT NULL)")
                src.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)")
                src.executemany("INSERT INTO items(body, created_at) VALUES(?, 0)",
                                [("restored %d" % i,) for i in range(rows)])
            src = sqlite3.connect(good)
            dst = sqlite3.connect(db + ".restore")
            src.backup(dst)
            dst.close()
            src.close()
            os.replace(db + ".restore", db)

        replace_with(7)
        self.assertEqual(self.expect("GET", "/items", 200)["count"], 30)  # still the old inode
        self.assertEqual(self.expect("POST", "/control/reopen-db", 200), {"ok": True, "rows": 7})
        self.assertEqual(self.expect("GET", "/items", 200)["count"], 7)
        self.assertEqual(self.expect("GET", "/items", 200)["checksum"], fnv1a64_checksum(db))
        self.assertEqual(self.expect("GET", "/search?q=restored", 200)["ids"],
                         list(range(1, 8)))  # the index follows the new file
        self.wait_status(p, lambda s: s["db"]["rows"] == 7, "db.rows 7")

        replace_with(11)
        p.send_signal(signal.SIGHUP)
        self.wait_for(lambda: self.expect("GET", "/items", 200)["count"] == 11,
                      "11 items after SIGHUP")
        self.stop(p)

    def test_log_reopened_after_rotation(self):
        self.write_config()
        p = self.start()
        log = self.path("logs", "app.log")
        os.rename(log, log + ".1")

        def rotated():
            item = self.expect("POST", "/items", 201, body={"body": "after rotation"})
            text = harness.read_or_none(log) or ""
            return "created item %d" % item["id"] in text
        self.wait_for(rotated, "a new logs/app.log with the new line", timeout=TIMEOUT_S)
        self.assertIn("boot: ready", harness.read_text(log + ".1"))
        self.stop(p)

    def test_full_disk_for_the_log_is_counted_not_fatal(self):
        # /dev/full answers every write with ENOSPC: a real full disk for the log alone.
        os.makedirs(self.path("logs"))
        os.symlink("/dev/full", self.path("logs", "app.log"))
        self.write_config()
        p = self.start()
        st = self.wait_status(p, lambda s: s["disk"]["enospc"] > 0, "disk.enospc > 0")
        self.assertEqual(st["disk"]["last_error"]["what"], "log")
        self.expect("POST", "/items", 201, body={"body": "still serving"})
        before = self.expect("GET", "/status", 200)["disk"]["enospc"]
        self.expect("POST", "/items", 201, body={"body": "one more log line"})
        self.assertGreater(self.expect("GET", "/status", 200)["disk"]["enospc"], before)
        self.stop(p)

    def test_sigterm_stops_cleanly_even_while_booting(self):
        self.write_config()
        p = self.start()
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(p, 3.0), 0, self.output(p))
        self.assertLess(time.monotonic() - t0, 3.0)
        st = self.status_file()
        self.assertEqual((st["pid"], st["state"]), (p.pid, "stopping"))
        self.assertIn("demo-app stopped (exit code 0)", self.app_log())

        with open(self.path("run", "faults.json"), "w", encoding="utf-8") as f:
            json.dump({"chunk_delay_ms": {"search_index": 30000}}, f)
        p = self.start(wait_ready=False)
        self.wait_status(p, lambda s: s["boot"]["current"] == "search_index", "search_index")
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.wait_exit(p, 3.0), 0, self.output(p))
        self.assertEqual(self.status_file()["state"], "stopping")

    def test_bad_config_exits_2_naming_file_and_line(self):
        cases = [
            ("server:\n  port: \"abc\"\n", ["line 2", "server.port", "expected an integer"]),
            ("server:\n  port: 8080\nboot:\n  chunks:\n    - {name: listen}\n    - {name: warp}\n",
             ["line 6", "boot.chunks[1].name", "unknown chunk 'warp'"]),
            ("server: [1,\n", ["line 2"]),
            ("database:\n  seed_rows: -1\n", ["line 2", "database.seed_rows", "out of range"]),
            ("model:\n  name: llama3.2:1b\n", ["line 2", "model.url", "missing"]),
            ("model:\n  url: 127.0.0.1:11434\n", ["line 2", "model.url", "http://"]),
            ("model:\n  url: http://127.0.0.1:11434\n  timeout_ms: 0\n",
             ["line 3", "model.timeout_ms", "out of range"]),
        ]
        for text, needles in cases:
            with self.subTest(config=text):
                with open(self.path("app.yaml"), "w", encoding="utf-8") as f:
                    f.write(text)
                r = subprocess.run([DEMO_APP, "--config", self.path("app.yaml")],
                                   capture_output=True, text=True, timeout=TIMEOUT_S)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(self.path("app.yaml"), r.stderr)
                for needle in needles:
                    self.assertIn(needle, r.stderr)
        self.assertFalse(os.path.exists(self.path("run", "status.json")))

    # --- upstreams (chaos/stack/upstream) --------------------------------------------------

    def upstream(self, *args):
        """Starts `chaos/stack/upstream ARGS --port 0` and returns its port."""
        p = subprocess.Popen([UPSTREAM] + list(args) + ["--port", "0"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        p.out = p.stdout  # closed with the others at cleanup
        self.procs.append(p)
        return json.loads(p.stdout.readline())["listening"]

    def control(self, port, mode, **extra):
        body = dict(mode=mode, **extra)
        r = self.http("POST", "/control/mode", body=body, port=port)
        self.assertEqual(r.status, 200, r.text)

    def test_quotes_follow_the_active_upstream_its_timeout_and_the_token_file(self):
        primary = self.upstream("api", "--name", "primary")
        backup = self.upstream("api", "--name", "backup")
        token = self.path("run", "token.json")
        os.makedirs(self.path("run"), exist_ok=True)
        harness.write_atomic(token, json.dumps({"access_token": "t-1"}))
        self.write_config(upstreams={"primary": "http://127.0.0.1:%d" % primary,
                                     "backup": "http://127.0.0.1:%d" % backup,
                                     "timeout_ms": 30000, "token_file": "run/token.json"})
        p = self.start()
        q = self.expect("GET", "/quote?item=7", 200)
        self.assertEqual((q["item"], q["served_by"], q["upstream"]), (7, "primary", "primary"))
        self.expect("GET", "/quote?item=x", 400)
        # The primary fails: the app answers 502 and says so in status.json, counted.
        self.control(primary, "fail", status=503)
        self.expect("GET", "/quote?item=7", 502)
        self.expect("GET", "/quote?item=8", 502)
        st = self.wait_status(p, lambda s: s["upstreams"]["primary"]["consecutive_failures"] == 2,
                              "two primary failures reported")
        self.assertEqual(st["upstreams"]["primary"]["last_error"]["kind"], "status 503")
        # The flags route it to the backup, and lower the timeout.
        self.write_flags({"seq": 1, "active_upstream": "backup", "upstream_timeout_ms": 300})
        self.wait_status(p, lambda s: s["flags"]["seq"] == 1, "flags applied")
        self.assertEqual(self.expect("GET", "/quote?item=7", 200)["served_by"], "backup")
        # A hanging backup costs the lowered timeout, then 504.
        self.control(backup, "hang")
        t0 = time.monotonic()
        self.expect("GET", "/quote?item=7", 504)
        self.assertLess(time.monotonic() - t0, 5)  # 300 ms, not the config's 30 s
        self.control(backup, "ok")
        st = self.wait_status(p, lambda s: s["upstreams"]["timeout_ms"] == 300, "timeout seen")
        self.assertEqual(st["upstreams"]["backup"]["last_error"]["kind"], "timeout")
        # Offline mode and a degraded feature pause quotes without calling anyone.
        self.write_flags({"seq": 2, "offline_mode": True})
        self.wait_status(p, lambda s: s["flags"]["seq"] == 2, "flags applied")
        self.assertIn("offline", self.expect("GET", "/quote?item=7", 503)["error"])
        self.stop(p)

    def test_refused_credentials_are_reported_as_auth_not_as_the_upstream(self):
        clients = self.path("clients.json")
        with open(clients, "w") as f:
            json.dump({"clients": {"app": {"secret": "s1"}}}, f)
        auth = self.upstream("auth", "--clients", clients)
        api = self.upstream("api", "--name", "primary", "--auth-url", "http://127.0.0.1:%d" % auth)
        token = self.http("POST", "/oauth/token", port=auth,
                          body={"grant_type": "client_credentials", "client_id": "app",
                                "client_secret": "s1"}).json["access_token"]
        os.makedirs(self.path("run"), exist_ok=True)
        harness.write_atomic(self.path("run", "token.json"), json.dumps({"access_token": token}))
        self.write_config(upstreams={"primary": "http://127.0.0.1:%d" % api,
                                     "token_file": "run/token.json"})
        p = self.start()
        self.expect("GET", "/quote?item=1", 200)
        self.assertTrue(self.status_file()["auth"]["ok"])
        # The token expires: the API refuses it; that is the app's credentials, not the API.
        self.http("POST", "/control/expire", port=auth)
        self.assertIn("credentials", self.expect("GET", "/quote?item=1", 502)["error"])
        st = self.wait_status(p, lambda s: not s["auth"]["ok"], "auth refused reported")
        self.assertEqual(st["auth"]["last_refused"]["status"], 401)
        self.assertEqual(st["upstreams"]["primary"]["consecutive_failures"], 0)
        # A fresh token in the token file (as a refresh would write it) is used at once.
        token = self.http("POST", "/oauth/token", port=auth,
                          body={"grant_type": "client_credentials", "client_id": "app",
                                "client_secret": "s1"}).json["access_token"]
        harness.write_atomic(self.path("run", "token.json"), json.dumps({"access_token": token}))
        self.expect("GET", "/quote?item=1", 200)
        self.wait_status(p, lambda s: s["auth"]["ok"], "auth ok again")
        self.assertNotIn(token, harness.read_or_none(self.path("run", "status.json")))
        self.assertNotIn(token, self.app_log())
        self.stop(p)

    # --- the model server (chaos/stack/upstream model) ---------------------------------------

    def model_server(self):
        """Starts the Ollama stand-in on a free loopback port: (process, base URL)."""
        port = self.upstream("model", "--models", "llama3.2:1b")
        return self.procs[-1], "http://127.0.0.1:%d" % port

    def model_status(self):
        return self.status_file()["model"]

    def test_generate_answers_and_model_server_errors_are_counted(self):
        server, url = self.model_server()
        port = int(url.rsplit(":", 1)[1])
        self.write_config(model={"url": url + "/", "name": "llama3.2:1b", "timeout_ms": 10000})
        p = self.start()
        self.assertEqual(self.model_status(), {
            "url": url, "name": "llama3.2:1b", "timeout_ms": 10000, "requests": 0,
            "failures": 0, "consecutive_failures": 0, "last_ms": 0, "last_error": None})
        r = self.expect("POST", "/generate", 200, body={"prompt": "say ok"})
        self.assertEqual((r["response"], r["model"]), ("ok", "llama3.2:1b"))
        self.assertIsInstance(r["ms"], int)
        for bad in ("not json", [1], {}, {"prompt": 7}):
            with self.subTest(body=bad):
                self.assertIn("error", self.expect("POST", "/generate", 400, body=bad))
        self.expect("GET", "/generate", 405)
        # The model server fails: 502 with Ollama's message, written to status.json before
        # the answer (a watchdog's inotify wakes on the failure itself, not on a timer).
        self.control(port, "error")
        r = self.expect("POST", "/generate", 502, body={"prompt": "say ok"})
        self.assertIn("llama runner process has terminated", r["error"])
        st = self.model_status()
        self.assertEqual((st["consecutive_failures"], st["last_error"]["kind"]), (1, "status 500"))
        self.assertIn("llama runner process has terminated", st["last_error"]["message"])
        self.expect("POST", "/generate", 502, body={"prompt": "say ok"})
        st = self.wait_status(p, lambda s: s["model"]["consecutive_failures"] == 2,
                              "two model failures reported")["model"]
        self.assertEqual((st["requests"], st["failures"]), (3, 2))
        # Back to ok: the first success is written at once too, and resets the run.
        self.control(port, "ok")
        self.expect("POST", "/generate", 200, body={"prompt": "say ok"})
        st = self.model_status()
        self.assertEqual((st["requests"], st["failures"], st["consecutive_failures"]), (4, 2, 0))
        self.assertEqual(self.http("GET", "/control/state", port=port).json["by_path"],
                         {"/api/generate": 4})
        self.stop(p)

    def test_generate_times_out_on_a_hung_model_server_and_a_stopped_one_is_unreachable(self):
        server, url = self.model_server()
        port = int(url.rsplit(":", 1)[1])
        self.write_config(model={"url": url, "timeout_ms": 300})
        p = self.start()
        self.assertEqual(self.model_status()["name"], "llama3.2:1b")  # the default name
        self.control(port, "hang")
        t0 = time.monotonic()
        r = self.expect("POST", "/generate", 504, body={"prompt": "say ok"})
        self.assertLess(time.monotonic() - t0, 5)  # the config's 300 ms
        self.assertEqual(r["model"], "llama3.2:1b")
        st = self.model_status()
        self.assertEqual((st["consecutive_failures"], st["last_error"]["kind"]), (1, "timeout"))
        self.assertGreaterEqual(st["last_ms"], 250)  # curl's timer and ours differ slightly
        self.control(port, "ok")
        server.send_signal(signal.SIGTERM)
        self.assertEqual(server.wait(timeout=TIMEOUT_S), 0)
        r = self.expect("POST", "/generate", 502, body={"prompt": "say ok"})
        self.assertIn("model server", r["error"])
        st = self.model_status()
        self.assertEqual((st["consecutive_failures"], st["last_error"]["kind"]),
                         (2, "unreachable"))
        self.assertIn("connect", st["last_error"]["message"].lower())  # curl's own words
        self.stop(p)

    def test_generate_paused_by_flags_and_model_section_applied_on_sighup(self):
        self.write_config()
        p = self.start()
        self.assertEqual(self.expect("POST", "/generate", 503, body={"prompt": "x"})["error"],
                         "no model server configured")
        self.assertEqual(self.model_status(), {
            "url": None, "name": None, "timeout_ms": 0, "requests": 0, "failures": 0,
            "consecutive_failures": 0, "last_ms": 0, "last_error": None})
        # A model section added to app.yaml applies on SIGHUP, without a restart.
        server, url = self.model_server()
        port = int(url.rsplit(":", 1)[1])
        self.write_config(model={"url": url, "name": "llama3.2:1b", "timeout_ms": 5000})
        p.send_signal(signal.SIGHUP)
        self.wait_status(p, lambda s: s["model"]["url"] == url, "model.url after SIGHUP")
        self.assertEqual(self.model_status()["timeout_ms"], 5000)
        self.expect("POST", "/generate", 200, body={"prompt": "say ok"})
        # A degraded feature and offline mode answer 503 without calling the model server.
        self.write_flags({"seq": 1, "degraded_features": ["model"]})
        self.wait_status(p, lambda s: s["flags"]["seq"] == 1, "flags applied")
        self.assertEqual(self.expect("POST", "/generate", 503, body={"prompt": "x"})["error"],
                         "feature degraded: model")
        self.write_flags({"seq": 2, "offline_mode": True})
        self.wait_status(p, lambda s: s["flags"]["seq"] == 2, "flags applied")
        self.assertEqual(self.expect("POST", "/generate", 503, body={"prompt": "x"})["error"],
                         "offline mode: model paused")
        self.assertEqual(self.http("GET", "/control/state", port=port).json["by_path"],
                         {"/api/generate": 1})
        self.assertEqual(self.expect("GET", "/status", 200)["model"]["requests"], 1)
        self.write_flags({"seq": 3})
        self.wait_status(p, lambda s: s["flags"]["seq"] == 3, "flags applied")
        self.expect("POST", "/generate", 200, body={"prompt": "say ok"})
        self.stop(p)


if __name__ == "__main__":
    unittest.main()
