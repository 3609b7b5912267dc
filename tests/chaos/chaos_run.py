"""Runs chaos/run --start for a chaos-tier test: its exit, its JSON document, and a report of
its output to show when an assertion fails."""

import json
import os
import subprocess
import sys
import tempfile

BIN = os.environ.get("GUARDIAN_BIN", "")
SOURCE = os.environ.get("GUARDIAN_SOURCE", "")


def run_chaos(*args, timeout=1200):
    with tempfile.TemporaryDirectory(prefix="guardian-chaos-test-") as tmp:
        out = os.path.join(tmp, "run.json")
        r = subprocess.run([sys.executable, os.path.join(SOURCE, "chaos", "run"), "--start",
                            "--bin-dir", BIN, "--state-dir", os.path.join(tmp, "demo"),
                            "--json", out, *args], capture_output=True, text=True,
                           timeout=timeout)
        doc = None
        if os.path.exists(out):
            with open(out) as f:
                doc = json.load(f)
    return r.returncode, doc, "\n" + r.stdout + r.stderr[-4000:]
