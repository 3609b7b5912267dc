"""Runs chaos/run --start for a chaos-tier test: its exit, its JSON document, and a report of
its output to show when an assertion fails. A failed run's report ends with the tail of
guardiand's log, and GUARDIAN_CHAOS_KEEP=DIR keeps each run's state dir under DIR."""

import json
import os
import subprocess
import sys
import tempfile

BIN = os.environ.get("GUARDIAN_BIN", "")
SOURCE = os.environ.get("GUARDIAN_SOURCE", "")
KEEP = os.environ.get("GUARDIAN_CHAOS_KEEP", "")
LOG_TAIL_LINES = 120


def log_tail(path, lines=LOG_TAIL_LINES):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return "(no log: %s)\n" % e


def run_chaos(*args, timeout=1200):
    if KEEP:
        os.makedirs(KEEP, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="guardian-chaos-test-", dir=KEEP)
        return _run(tmp, args, timeout)
    with tempfile.TemporaryDirectory(prefix="guardian-chaos-test-") as tmp:
        return _run(tmp, args, timeout)


def _run(tmp, args, timeout):
    out = os.path.join(tmp, "run.json")
    state = os.path.join(tmp, "demo")
    r = subprocess.run([sys.executable, os.path.join(SOURCE, "chaos", "run"), "--start",
                        "--keep", "--bin-dir", BIN, "--state-dir", state, "--json", out, *args],
                       capture_output=True, text=True, timeout=timeout)
    doc = None
    if os.path.exists(out):
        with open(out) as f:
            doc = json.load(f)
    report = "\n" + r.stdout + r.stderr[-4000:]
    if r.returncode != 0:
        report += "\n--- the last %d lines of guardiand.log (%s) ---\n%s" % (
            LOG_TAIL_LINES, state, log_tail(os.path.join(state, "guardiand.log")))
    return r.returncode, doc, report
