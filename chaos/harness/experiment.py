"""One chaos experiment: steady state -> a real fault at a random point of the check's probe
cycle -> Guardian's incident, judged -> the fault undone (always) -> steady state again.

run_experiment returns a plain dict (the JSON run's `experiments[]` entry, docs/chaos.md); it
raises only KeyboardInterrupt, after undoing the fault.
"""
import re
import time

from . import faults, steady
from .api import ApiError

TERMINAL = ("resolved", "escalated")
# How much longer than the target chaos/run waits for an incident to end, to say what happened
# rather than only that the target was missed.
GRACE_S = 30
SETTLE_S = 60  # how long the stack gets to reach its steady state again
# Step messages in which an incident reports the data or config it could not keep.
LOSS_REPORTED = re.compile(r"may be lost|defaults", re.I)


def now_ms():
    return int(time.time() * 1000)


def check_of(status, mode):
    """The first configured check of this mode, or None."""
    for c in status.get("checks", []):
        if c.get("mode") == mode:
            return c
    return None


def newest_id(api, check=None):
    found = api.incidents(check=check, limit=1)
    return found[0]["id"] if found else 0


def wait_incident(api, check, after, deadline):
    """The first incident of `check` newer than `after` once it has ended, else the newest such
    one as it is at the deadline (or None)."""
    seen = None
    while True:
        for inc in reversed(api.incidents(check=check, limit=10)):
            if inc["id"] > after:
                seen = inc
                break
        if seen is not None and seen["state"] in TERMINAL:
            return seen
        if time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def judge(inc, onset, target_ms):
    """The verdicts on one incident, and the failures among them."""
    steps = inc.get("steps", [])
    verified = any(s["phase"] == "verify" and s["status"] == "ok" for s in steps)
    out = {
        "incident": inc["id"], "state": inc["state"], "playbook": inc.get("playbook"),
        "detected": inc.get("detected_at") is not None,
        "healed": inc["state"] == "resolved",
        "verified": verified,
        "mttd_ms": inc["detected_at"] - onset if inc.get("detected_at") else None,
        "mttr_ms": inc["recovered_at"] - onset if inc.get("recovered_at") else None,
        "incident_mttd_ms": inc.get("mttd_ms"), "incident_mttr_ms": inc.get("mttr_ms"),
        "attempts": inc.get("attempts"), "reason": inc.get("reason", ""),
    }
    out["within_target"] = out["mttr_ms"] is not None and out["mttr_ms"] <= target_ms and \
        bool(inc.get("within_target"))
    failures = []
    if not out["healed"]:
        failures.append("incident #%d ended %s: %s" % (inc["id"], inc["state"],
                                                       inc.get("reason") or "no reason"))
    elif not verified:
        failures.append("incident #%d resolved without a verify step that passed" % inc["id"])
    if out["healed"] and not out["within_target"]:
        failures.append("MTTR %s ms from the fault (Guardian's own: %s ms) over the %d ms "
                        "target" % (out["mttr_ms"], inc.get("mttr_ms"), target_ms))
    return out, failures


def run_experiment(stack, fault, repeat, rng, baseline, log):
    """One fault of `fault.mode` (kind by repeat), judged; updates `baseline` when an incident
    reported a change to the data or config it could not avoid."""
    kind = fault.kind(repeat)
    res = {"mode": fault.mode, "kind": kind, "repeat": repeat, "ok": False, "skipped": False,
           "failures": [], "other_incidents": []}
    status = stack.api.status()
    check = check_of(status, fault.mode)
    if check is None:
        return dict(res, skipped=True, skip_reason="no check of mode %s in guardiand's config"
                    % fault.mode)
    why = fault.needs(stack) if fault.needs else None
    if why:
        return dict(res, skipped=True, skip_reason=why)
    res.update(check=check["id"], target_ms=check["target_ms"], interval_ms=check["interval_ms"])

    waited, problems = steady.wait_steady(stack, baseline, SETTLE_S)
    if problems:
        res["failures"].append("no steady state before the fault: " + "; ".join(problems))
        return res
    before_all = newest_id(stack.api)
    before = newest_id(stack.api, check["id"])
    # A random point of the probe cycle: the fault lands anywhere between two probes.
    res["offset_ms"] = int(rng.uniform(0, check["interval_ms"]))
    time.sleep(res["offset_ms"] / 1000)
    injected = False
    try:
        log("%s (%s): injecting after %d ms into the probe cycle" % (fault.mode, kind,
                                                                     res["offset_ms"]))
        injected = True  # a failed injector may still have broken something: undo it too
        out = faults.inject(stack.state_dir, fault.mode, "--kind", kind, *fault.args)
        onset = out["onset_at"]
        res["onset_at"] = onset
        deadline = time.monotonic() + check["target_ms"] / 1000 + GRACE_S
        inc = wait_incident(stack.api, check["id"], before, deadline)
        if inc is None:
            res["failures"].append("no incident of %s within %d s of the fault" % (
                check["id"], check["target_ms"] / 1000 + GRACE_S))
        elif inc["state"] not in TERMINAL:
            res["failures"].append("incident #%d still %s %d s after the fault" % (
                inc["id"], inc["state"], check["target_ms"] / 1000 + GRACE_S))
            res["incident"] = inc["id"]
        else:
            inc = stack.api.incident(inc["id"])
            verdict, failures = judge(inc, onset, check["target_ms"])
            res.update(verdict)
            res["failures"] += failures
            if verdict["healed"]:
                check_nothing_lost(stack, inc, baseline, res)
    except faults.InjectError as e:
        res["failures"].append(str(e))
    except ApiError as e:
        res["failures"].append("guardiand: %s" % e)
    finally:
        if injected:
            try:
                faults.inject(stack.state_dir, fault.mode, "--undo")
            except faults.InjectError as e:
                res["failures"].append("undo: %s" % e)
    judge_steady_after(stack, baseline, res)
    # Other incidents opened meanwhile: the check's own after the undo (a breaker closed, a
    # mode left: its return to normal) or other checks' (collateral). Reported; one that did
    # not heal fails the experiment.
    for other in stack.api.incidents(limit=50):
        if other["id"] > before_all and other["id"] != res.get("incident"):
            own = other["check"] == res["check"] and other["id"] > res.get("incident", 0)
            res["other_incidents"].append({
                "incident": other["id"], "check": other["check"], "mode": other["mode"],
                "state": other["state"], "cause": "undo" if own else "collateral"})
            if other["state"] == "escalated":
                res["failures"].append("incident #%d of %s escalated: %s" % (
                    other["id"], other["check"], other.get("reason", "")))
    res["ok"] = not res["failures"]
    return res


def judge_steady_after(stack, baseline, res):
    """After the undo: the steady state within SETTLE_S (read now, so --settle applies)."""
    waited, problems = steady.wait_steady(stack, baseline, SETTLE_S)
    res["steady_after_ms"] = waited
    if problems:
        res["failures"].append("no steady state %d s after the faults were undone: %s" % (
            SETTLE_S, "; ".join(problems)))


def check_nothing_lost(stack, inc, baseline, res):
    """After a heal: the app's items and config as before, unless the incident reported why not
    (then that is the new baseline)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        snap = steady.observe(stack)
        if snap["items"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    changed = steady.differences(snap, baseline, flags=False)  # a heal may set flags
    if not changed:
        return
    reported = [s["message"] for s in inc.get("steps", []) if LOSS_REPORTED.search(s["message"] or "")]
    if reported:
        res["changed"] = {"what": changed, "reported": reported}
        if snap["items"] is not None:
            baseline["items"] = snap["items"]
        baseline["config"] = snap["config"]
    else:
        res["failures"].append("changed and not reported by incident #%d: %s" % (
            inc["id"], "; ".join(changed)))
