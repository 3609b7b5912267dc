"""What a chaos run reports: the per-experiment table, the per-mode summary, and the JSON
document (`format: guardian-chaos-run/1`, docs/chaos.md), which only grows compatibly."""
import math

FORMAT = "guardian-chaos-run/1"


def percentile(values, q):
    """Nearest rank: the smallest value with at least q of them at or below it."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)] if s else None


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95), "max": max(values)}


def summary(experiments):
    """Per mode, in run order: counts and MTTD/MTTR (from the fault) against the target."""
    modes = {}
    for e in experiments:
        m = modes.setdefault(e["mode"], {"count": 0, "ok": 0, "failed": 0, "skipped": 0,
                                         "target_ms": e.get("target_ms"), "_d": [], "_r": [],
                                         "skip_reason": None})
        if e["skipped"]:
            m["skipped"] += 1
            m["skip_reason"] = e.get("skip_reason")
            continue
        m["count"] += 1
        m["ok" if e["ok"] else "failed"] += 1
        m["_d"].append(e.get("mttd_ms"))
        m["_r"].append(e.get("mttr_ms"))
    for m in modes.values():
        m["mttd_ms"], m["mttr_ms"] = stats(m.pop("_d")), stats(m.pop("_r"))
        p95, target = m["mttr_ms"]["p95"], m["target_ms"]
        m["p95_within_target"] = None if p95 is None or not target else p95 <= target
        m["p50_ratio"] = None if m["mttr_ms"]["p50"] is None or not target else \
            round(m["mttr_ms"]["p50"] / target, 3)
        if m["skip_reason"] is None:
            del m["skip_reason"]
    return modes


def document(experiments, meta):
    doc = dict(meta)
    doc["format"] = FORMAT
    doc["ok"] = all(e["ok"] or e["skipped"] for e in experiments) and \
        any(not e["skipped"] for e in experiments)
    doc["experiments"] = experiments
    doc["modes"] = summary(experiments)
    return doc


def stored_summary(doc):
    """What guardiand keeps of a run for the report's trend (POST /v1/chaos-runs): the times,
    the verdict and the per-mode figures, not each experiment."""
    runs = [e for e in doc["experiments"] if not e["skipped"]]
    out = {k: doc[k] for k in ("format", "started_at", "ended_at", "ok", "seed", "repeat")}
    out.update(experiments=len(runs), failed=sum(1 for e in runs if not e["ok"]),
               skipped=len(doc["experiments"]) - len(runs),
               modes={mode: {k: v for k, v in m.items() if k != "skip_reason"}
                      for mode, m in doc["modes"].items()})
    return out


def _ms(v):
    if v is None:
        return "-"
    return "%d ms" % v if v < 10000 else "%.1f s" % (v / 1000)


def table(doc):
    """The text report: one line per experiment, the failures under it, then the summary."""
    rows = [("MODE", "KIND", "CHECK", "INCIDENT", "MTTD", "MTTR", "TARGET", "RESULT")]
    notes = []
    for e in doc["experiments"]:
        if e["skipped"]:
            rows.append((e["mode"], e["kind"], e.get("check", "-"), "-", "-", "-", "-", "skipped"))
            notes.append("  %s: skipped: %s" % (e["mode"], e["skip_reason"]))
            continue
        inc = "#%d %s" % (e["incident"], e.get("state", "")) if e.get("incident") else "-"
        rows.append((e["mode"], e["kind"], e.get("check", "-"), inc, _ms(e.get("mttd_ms")),
                     _ms(e.get("mttr_ms")), _ms(e.get("target_ms")),
                     "ok" if e["ok"] else "FAILED"))
        for f in e["failures"]:
            notes.append("  %s (%s) #%d: %s" % (e["mode"], e["kind"], e["repeat"] + 1, f))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if notes:
        lines += [""] + notes
    lines += ["", "per mode (from the fault's onset):"]
    srows = [("MODE", "RUNS", "OK", "MTTD p50", "MTTR p50", "MTTR p95", "MTTR max", "TARGET",
              "p95 IN TARGET")]
    for mode, m in doc["modes"].items():
        if not m["count"]:
            continue
        srows.append((mode, str(m["count"]), str(m["ok"]), _ms(m["mttd_ms"]["p50"]),
                      _ms(m["mttr_ms"]["p50"]), _ms(m["mttr_ms"]["p95"]), _ms(m["mttr_ms"]["max"]),
                      _ms(m["target_ms"]), {True: "yes", False: "NO", None: "-"}[m["p95_within_target"]]))
    widths = [max(len(r[i]) for r in srows) for i in range(len(srows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in srows]
    ran = [e for e in doc["experiments"] if not e["skipped"]]
    failed = [e for e in ran if not e["ok"]]
    skipped = sum(1 for e in doc["experiments"] if e["skipped"])
    lines += ["", "%s: %d experiments, %d failed, %d skipped" % (
        "ok" if doc["ok"] else "FAILED", len(ran), len(failed), skipped)]
    return "\n".join(lines)
