#!/usr/bin/env python3
"""Turns a chaos/run --json document into docs/benchmarks.md's table: per mode, MTTD and MTTR
p50/p95 from the fault's onset (chaos/run's own figures), Guardian's incident MTTR p50, the
target, and the ratios the goal is stated in (p95 / target at most 1, p50 / target at most 0.1).

  chaos/run --start --repeat 10 --json run.json
  bench/chaos_table.py run.json
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "chaos"))
from harness.report import stats  # noqa: E402  (chaos/run's own nearest-rank percentiles)


def ms(v):
    return "-" if v is None else "%d" % v


def ratio(v, target):
    return "-" if v is None or not target else "%.3f" % (v / target)


def rows(doc):
    out = []
    for mode, m in doc["modes"].items():
        if mode.startswith("scenario:") or not m["count"]:
            continue
        runs = [e for e in doc["experiments"] if e["mode"] == mode and not e["skipped"]]
        incident = stats([e.get("incident_mttr_ms") for e in runs])["p50"]
        target = m["target_ms"]
        p50, p95 = m["mttr_ms"]["p50"], m["mttr_ms"]["p95"]
        kinds = sorted({e["kind"] for e in runs})
        out.append("| %s (%s) | %d/%d | %s / %s ms | %s / %s ms | %s ms | %d s | %s | %s%s |" % (
            mode, ", ".join(kinds), m["ok"], m["count"], ms(m["mttd_ms"]["p50"]),
            ms(m["mttd_ms"]["p95"]), ms(p50), ms(p95), ms(incident), target // 1000,
            ratio(p95, target), ratio(p50, target),
            "" if p50 is None or p50 <= target / 10 else " (over)"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="chaos/run's JSON document")
    args = ap.parse_args()
    with open(args.run) as f:
        doc = json.load(f)
    print("| mode (kinds) | ok / runs | MTTD from fault p50 / p95 | MTTR from fault p50 / p95 | "
          "incident MTTR p50 | target | p95 / target | p50 / target |")
    print("|---|---|---|---|---|---|---|---|")
    for line in rows(doc):
        print(line)
    mins = (doc["ended_at"] - doc["started_at"]) / 60000
    print("\n%d experiments in %.1f min, seed %s, %s" % (
        sum(1 for e in doc["experiments"] if not e["skipped"]), mins, doc["seed"],
        "all ok" if doc["ok"] else "NOT all ok"))


if __name__ == "__main__":
    main()
