"""The stack's steady-state hypothesis: what must hold before a fault and again after it.

  guardiand   answers, acts (not observe-only), no incident open, every check ok and not held
  services    every supervised service ready on its preferred port, accepting connections, its
              restart backoff back at the base (no failures since it was last verified healthy)
  app         /readyz 200; its items (GET /items: count and checksum), its config file
              (app.yaml's SHA-256) and the flags Guardian set for it (run/flags.json: low-memory
              mode, degraded features, the breaker) as in the baseline taken before the first fault

A change to the items or the config is accepted only when the incident that ran says so (the
db_corruption playbook reports that writes after its backup may be lost; missing_config that it
wrote defaults); the baseline then moves, and the experiment records what changed.
"""
import hashlib
import json
import os
import socket
import time

from .api import ApiError


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _config_digest(stack):
    try:
        with open(os.path.join(stack.stack, "app", "app.yaml"), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        return "unreadable: %s" % e.strerror


def _flags(stack):
    """The flags Guardian has set for the app (run/flags.json without its sequence number)."""
    try:
        with open(os.path.join(stack.stack, "run", "flags.json")) as f:
            flags = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        return {"unreadable": str(e)}
    flags.pop("seq", None)
    # A missing key is its default (docs/demo-stack.md): compare what is set.
    return {k: v for k, v in flags.items() if v not in (False, [], None, "primary", 0)}


def observe(stack):
    """What the hypothesis looks at now, as a dict (also the baseline)."""
    snap = {"items": None, "config": _config_digest(stack), "flags": _flags(stack),
            "ready": None, "problems": []}
    try:
        st = stack.api.status()
    except ApiError as e:
        snap["problems"].append(str(e))
        return snap
    if st.get("mode") != "act":
        snap["problems"].append("guardiand is in %s mode" % st.get("mode"))
    if st.get("open_incidents"):
        snap["problems"].append("open incidents: %s" % ", ".join(
            "#%d %s (%s)" % (i["id"], i["check"], i["state"]) for i in st.get("incidents", [])))
    for c in st.get("checks", []):
        if c.get("held"):
            snap["problems"].append("check %s is held: %s" % (c["id"], c.get("hold_reason")))
        elif c.get("state") != "ok":
            snap["problems"].append("check %s is %s: %s" % (c["id"], c.get("state"),
                                                            c.get("evidence", "")))
    for s in st.get("services", []):
        if s.get("state") != "ready":
            snap["problems"].append("service %s is %s" % (s["name"], s.get("state")))
        elif s.get("failures"):
            # Its restart backoff is still raised from recent crashes (it resets once the
            # service has been ready for its healthy_after_ms): the next fault would be timed
            # against a backoff the last one left, not against Guardian.
            snap["problems"].append("service %s: %d recent failures, restart backoff not reset "
                                    "yet" % (s["name"], s["failures"]))
        elif s.get("preferred_port") and s.get("port") != s["preferred_port"]:
            snap["problems"].append("service %s is on port %s, not its preferred %s%s" % (
                s["name"], s.get("port"), s["preferred_port"],
                " (%s)" % s["port_moved_reason"] if s.get("port_moved_reason") else ""))
        elif s.get("port") and not _port_open(s["port"]):
            snap["problems"].append("service %s: nothing accepts on its port %d" % (
                s["name"], s["port"]))
    snap["ports"] = {s["name"]: s.get("port") for s in st.get("services", [])}
    try:
        code, body = stack.app_get("/readyz")
        snap["ready"] = code == 200
        if code != 200:
            snap["problems"].append("the app is not ready: %s" % body.get("reason", code))
        code, body = stack.app_get("/items")
        if code == 200:
            snap["items"] = {"count": body.get("count"), "checksum": body.get("checksum")}
        else:
            snap["problems"].append("GET /items answered %d" % code)
    except (OSError, ValueError, KeyError) as e:
        snap["problems"].append("the app cannot be reached: %s" % e)
    return snap


def differences(snap, baseline, flags=True):
    """What differs from the baseline in the stack's data, config (and flags)."""
    out = []
    if snap["items"] is not None and snap["items"] != baseline["items"]:
        out.append("items %s -> %s" % (_items(baseline["items"]), _items(snap["items"])))
    if flags and snap["flags"] != baseline["flags"]:
        out.append("the app's flags %s -> %s" % (json.dumps(baseline["flags"]),
                                                 json.dumps(snap["flags"])))
    if snap["config"] != baseline["config"]:
        out.append("app.yaml %s -> %s" % (baseline["config"][:12], snap["config"][:12]))
    return out


def _items(i):
    return "none" if not i else "%s rows (%s)" % (i["count"], i["checksum"])


def holds(stack, baseline):
    """(True, snap) when the whole hypothesis holds now, else (False, snap with problems)."""
    snap = observe(stack)
    if baseline is not None:
        snap["problems"] += differences(snap, baseline)
    return not snap["problems"], snap


def wait_steady(stack, baseline, timeout_s):
    """Waits until the hypothesis holds; (ms waited, None) or (ms, the last snapshot's problems)."""
    start = time.monotonic()
    while True:
        ok, snap = holds(stack, baseline)
        waited = int((time.monotonic() - start) * 1000)
        if ok:
            return waited, None
        if time.monotonic() - start > timeout_s:
            return waited, snap["problems"]
        time.sleep(0.1)
