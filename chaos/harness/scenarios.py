"""Compound scenarios: real outages are not one fault at a time. Each scenario makes several
faults (or breaks Guardian itself), checks what Guardian must do about them as a whole, undoes
every fault, and needs the steady state before and after, like a single-mode experiment. Each
returns the same dict as one (`mode` is `scenario:NAME`; docs/chaos.md).

  network-outage        the network drops: app-net goes offline, and the lab model server's
                        check, which depends on it, is linked to that incident; exactly one
                        playbook (app-net's) runs, and the model server is never restarted
  model-and-network     the lab model server hangs and the network goes down at once: linked
                        while the network is down; once it is back, the model server's own
                        playbook restarts it (its failure was its own too)
  disk-and-db           the database's header is zeroed and its disk fills at once: the
                        database's incident waits for the disk's (depends_on), then restores
  port-during-slow-boot the app is killed mid slow boot and its port taken: app-port moves it
                        (done once it listens), app-boot skips the slow chunk; one playbook
                        acts on the app at a time, all resolve, and no restart loop
  guardiand-killed      guardiand is SIGKILLed while a playbook runs and started again (chaos/run
                        is its supervisor here): the same incident finishes, resolved
  fault-storm           with app-config's budget at 3 actions, its file is deleted again right
                        after every heal: 3 heals, then the incident escalates on the budget and
                        the check is held with the reason, and nothing more is done until the
                        fault is undone
"""
import json
import os
import re
import time
import urllib.request

from . import experiment, faults, steady
from .api import ApiError
from .experiment import TERMINAL, newest_id, now_ms
from .stack import StackError, StartedStack, wait_for


def _result(name, mode):
    return {"mode": "scenario:" + name, "kind": mode, "scenario": name, "repeat": 0, "ok": False,
            "skipped": False, "failures": [], "other_incidents": []}


def _incident_after(api, check, after, states=TERMINAL, timeout_s=60, where=None):
    """The first incident of `check` newer than `after` in one of `states` (and matching
    `where`), waited for."""
    def found():
        for inc in reversed(api.incidents(check=check, limit=20)):
            if inc["id"] > after and inc["state"] in states and (where is None or where(inc)):
                return inc
        return None
    return wait_for("an incident of %s (%s)" % (check, "/".join(states)), timeout_s, found, 0.05)


def _phases(inc):
    return [s["phase"] for s in inc.get("steps", [])]


def _acted(inc):
    """Whether a playbook ran for this incident (any phase beyond observing and probing)."""
    return any(p in ("backup", "remediate", "verify", "rollback") for p in _phases(inc))


def _needs_lab_model(stack):
    if os.geteuid() != 0:
        return "needs root (a network namespace: chaos/stack/netlab.py)"
    st = stack.api.status()
    ids = {c["id"] for c in st.get("checks", [])}
    if not {"app-net", "lab-model"} <= ids or not isinstance(stack, StartedStack):
        return "needs the app-net and lab-model checks (chaos/run --start as root)"
    return None


def _needs_started(stack):
    if not isinstance(stack, StartedStack):
        return "needs a stack chaos/run started itself (--start): it restarts guardiand or " \
               "changes its config"
    return None


def _lab_model_mode(stack, mode):
    """Switches the lab model server's fault (its control endpoint, on the private network)."""
    port = stack.lab_model_port()
    req = urllib.request.Request("http://%s:%d/control/mode" % (stack.netlab_record()["ip"], port),
                                 data=json.dumps({"mode": mode}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def network_outage(stack, baseline, log):
    res = _result("network-outage", "network_unreachable")
    before = newest_id(stack.api)
    undone = False
    try:
        onset = faults.inject(stack.state_dir, "network_unreachable", "--kind", "drop")["onset_at"]
        res["onset_at"] = onset
        root = _incident_after(stack.api, "app-net", before, timeout_s=15)
        # The lab model's probes time out meanwhile: its incident must be linked to app-net's.
        dep = _incident_after(stack.api, "lab-model", before, states=("open", "resolved"),
                              timeout_s=15, where=lambda i: i.get("caused_by"))
        res["incident"], res["dependent"] = root["id"], dep["id"]
        if dep["caused_by"] != root["id"]:
            res["failures"].append("lab-model's incident #%d is linked to #%s, not app-net's "
                                   "#%d" % (dep["id"], dep["caused_by"], root["id"]))
        time.sleep(1)  # the outage goes on for a while: still no playbook for lab-model
        faults.inject(stack.state_dir, "network_unreachable", "--undo")
        undone = True
        dep = stack.api.incident(_incident_after(stack.api, "lab-model", dep["id"] - 1,
                                                 timeout_s=30)["id"])
        res["mttr_ms"] = (dep.get("recovered_at") or 0) - onset
        if dep["state"] != "resolved":
            res["failures"].append("lab-model's incident #%d ended %s" % (dep["id"], dep["state"]))
        if _acted(dep):
            res["failures"].append("lab-model's own playbook ran (%s) although the network "
                                   "explained its failure" % ", ".join(_phases(dep)))
        _incident_after(stack.api, "app-net", root["id"], timeout_s=30)  # offline mode off
        # Exactly one root cause acted: every incident with a playbook run is app-net's.
        acted = [i for i in stack.api.incidents(limit=50) if i["id"] > before and
                 _acted(stack.api.incident(i["id"]))]
        res["playbooks_ran"] = sorted({i["check"] for i in acted})
        if res["playbooks_ran"] != ["app-net"]:
            res["failures"].append("playbooks ran for %s; only app-net's should have" %
                                   ", ".join(res["playbooks_ran"]))
    except (StackError, ApiError, faults.InjectError) as e:
        res["failures"].append(str(e))
    finally:
        if not undone:
            faults.inject(stack.state_dir, "network_unreachable", "--undo")
    experiment.judge_steady_after(stack, baseline, res)
    return res


def model_and_network(stack, baseline, log):
    res = _result("model-and-network", "model_server_down")
    before = newest_id(stack.api)
    undone = False
    try:
        onset = now_ms()
        _lab_model_mode(stack, "hang")
        faults.inject(stack.state_dir, "network_unreachable", "--kind", "link")
        res["onset_at"] = onset
        root = _incident_after(stack.api, "app-net", before, timeout_s=15)
        # Held as caused by app-net. Its incident id may be missing: a dependent opened just as
        # app-net's incident resolved is caused by the check, whose next incident links it.
        dep = _incident_after(stack.api, "lab-model", before, states=("open",), timeout_s=15,
                              where=lambda i: i.get("caused_by") or
                              "caused by check app-net" in (i.get("reason") or ""))
        res["incident"] = dep["id"]
        faults.inject(stack.state_dir, "network_unreachable", "--undo")
        undone = True
        # The network is back and the server still hangs: now it is lab-model's to heal.
        inc = stack.api.incident(_incident_after(stack.api, "lab-model", dep["id"] - 1,
                                                 timeout_s=60)["id"])
        res["mttr_ms"] = (inc.get("recovered_at") or 0) - onset
        res["phases"] = _phases(inc)
        if inc["state"] != "resolved":
            res["failures"].append("lab-model's incident #%d ended %s: %s" % (
                inc["id"], inc["state"], inc.get("reason")))
        if not _phases(inc) or _phases(inc)[0] != "observe" or "remediate" not in _phases(inc):
            res["failures"].append("lab-model's incident #%d should have waited on app-net, then "
                                   "run its own playbook: %s" % (inc["id"], _phases(inc)))
        if inc.get("caused_by") is not None:
            res["failures"].append("lab-model's incident #%d is still linked to #%s" % (
                inc["id"], inc["caused_by"]))
        if root["state"] != "resolved":
            res["failures"].append("app-net's incident #%d ended %s" % (root["id"], root["state"]))
    except (StackError, ApiError, faults.InjectError, OSError) as e:
        res["failures"].append(str(e))
    finally:
        if not undone:
            faults.inject(stack.state_dir, "network_unreachable", "--undo")
        try:
            _lab_model_mode(stack, "ok")
        except OSError:
            pass  # restarted meanwhile: a new server starts in mode ok
    experiment.judge_steady_after(stack, baseline, res)
    return res


def guardiand_killed(stack, baseline, log):
    res = _result("guardiand-killed", "model_server_down")
    before = newest_id(stack.api, "app-model")
    try:
        onset = faults.inject(stack.state_dir, "model_server_down", "--kind", "hang")["onset_at"]
        res["onset_at"] = onset
        running = _incident_after(stack.api, "app-model", before, states=("running",),
                                  timeout_s=20)
        res["incident"] = running["id"]
        log("guardiand-killed: SIGKILL guardiand (pid %d) during incident #%d" % (
            stack.proc.pid, running["id"]))
        stack.kill_guardiand()
        stack.restart_guardiand()
        inc = stack.api.incident(_incident_after(stack.api, "app-model", running["id"] - 1,
                                                 timeout_s=60)["id"])
        res["mttr_ms"] = (inc.get("recovered_at") or 0) - onset
        res["state"] = inc["state"]
        if inc["id"] != running["id"]:
            res["failures"].append("a new incident #%d instead of finishing #%d" % (
                inc["id"], running["id"]))
        if inc["state"] != "resolved":
            res["failures"].append("incident #%d ended %s: %s" % (inc["id"], inc["state"],
                                                                  inc.get("reason")))
        if not any(s["status"] == "interrupted" or "restart" in (s["message"] or "")
                   for s in inc.get("steps", [])) and "restart" not in inc.get("reason", ""):
            res["failures"].append("incident #%d does not record the interruption" % inc["id"])
        st = stack.api.status()
        if any(i["state"] == "running" for i in st.get("incidents", [])):
            res["failures"].append("an incident is left running")
    except (StackError, ApiError, faults.InjectError) as e:
        res["failures"].append(str(e))
    finally:
        faults.inject(stack.state_dir, "model_server_down", "--undo")
    experiment.judge_steady_after(stack, baseline, res)
    return res


def _opened_since(api, before):
    """Every incident opened after id `before`, oldest first, with its steps."""
    return [api.incident(i["id"]) for i in reversed(api.incidents(limit=100)) if i["id"] > before]


def _all_ended(api, before, checks, timeout_s):
    """Waits until `checks` each have an incident after `before` and none of those is open."""
    def ended():
        incs = [i for i in api.incidents(limit=100) if i["id"] > before]
        have = {i["check"] for i in incs}
        if checks <= have and all(i["state"] in TERMINAL for i in incs):
            return incs
        return None
    return wait_for("incidents of %s, all ended" % ", ".join(sorted(checks)), timeout_s, ended,
                    0.05)


def _judge_all_resolved(incs, res):
    for inc in incs:
        if inc["state"] != "resolved":
            res["failures"].append("%s's incident #%d ended %s: %s" % (
                inc["check"], inc["id"], inc["state"], inc.get("reason")))


def disk_and_db(stack, baseline, log):
    res = _result("disk-and-db", "disk_full")
    before = newest_id(stack.api)
    held = False
    try:
        # The database is corrupted and its disk fills. Restoring the database needs room on
        # that disk, so its incident must wait for the disk's (app-db depends_on app-disk),
        # then restore: never fail on the full disk, never give up. Both checks are held while
        # the faults are made (a held check does not probe), so that both are broken before
        # Guardian looks at either; the injector corrupts first, as its copy needs room.
        for check in ("app-db", "app-disk"):
            stack.api.hold(check, "chaos/run disk-and-db: both faults first")
        held = True
        onset = faults.inject(stack.state_dir, "db_corruption", "--kind", "header")["onset_at"]
        faults.inject(stack.state_dir, "disk_full", "--kind", "mixed")
        res["onset_at"] = onset
        for check in ("app-db", "app-disk"):
            stack.api.release(check)
        held = False
        _all_ended(stack.api, before, {"app-db", "app-disk"}, timeout_s=90)
        incs = _opened_since(stack.api, before)
        _judge_all_resolved(incs, res)
        db = next(i for i in incs if i["check"] == "app-db")
        disk = next(i for i in incs if i["check"] == "app-disk")
        res["incident"], res["dependent"] = disk["id"], db["id"]
        res["mttr_ms"] = max(i.get("recovered_at") or 0 for i in incs) - onset
        res["phases"] = _phases(db)
        steps = db.get("steps", [])
        if not steps or steps[0]["phase"] != "observe" or \
                "app-disk" not in (steps[0]["message"] or ""):
            res["failures"].append("app-db's incident #%d did not wait for app-disk first: %s" %
                                   (db["id"], _phases(db)))
        remediated = [st for st in steps if st["phase"] == "remediate"]
        if not remediated:
            res["failures"].append("app-db's incident #%d never ran its playbook (the header "
                                   "is gone: only a restore heals it): %s" % (
                                       db["id"], _phases(db)))
        elif disk.get("recovered_at") and remediated[0]["started_at"] < disk["recovered_at"]:
            res["failures"].append("app-db's playbook ran before app-disk's incident #%d ended"
                                   % disk["id"])
        failed = [st["phase"] for st in steps if st["status"] == "failed"]
        if failed:
            res["failures"].append("app-db's incident #%d had failed steps: %s" % (db["id"],
                                                                                  failed))
        experiment.check_nothing_lost(stack, db, baseline, res)
    except (StackError, ApiError, faults.InjectError, StopIteration) as e:
        res["failures"].append(str(e) or "an incident is missing")
    finally:
        if held:
            for check in ("app-db", "app-disk"):
                stack.api.release(check)
        faults.inject(stack.state_dir, "disk_full", "--undo")
        faults.inject(stack.state_dir, "db_corruption", "--undo")
    experiment.judge_steady_after(stack, baseline, res)
    return res


def _app_status(stack):
    try:
        with open(os.path.join(stack.stack, "run", "status.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _app_starts(stack):
    svc = next((s for s in stack.api.status().get("services", []) if s["name"] == "app"), {})
    return svc.get("starts", 0)


# A slow boot and a port conflict together restart the app a few times (the conflict's kill,
# the move to a spare port, the boot's restart with the chunk skipped, the move back): more
# than this is a restart loop.
MAX_APP_STARTS = 8


def port_during_slow_boot(stack, baseline, log):
    res = _result("port-during-slow-boot", "slow_boot")
    before = newest_id(stack.api)
    starts = _app_starts(stack)
    try:
        out = faults.inject(stack.state_dir, "slow_boot", "--kind", "search_index",
                            "--delay-ms", "20000")
        onset = res["onset_at"] = out["onset_at"]
        # Mid-boot: the new app holds its port and sits in the slow chunk. Then it is killed
        # and another program takes the port before the app's next boot.
        wait_for("the app booting in search_index", 20, lambda: (
            _app_status(stack).get("pid") not in (None, out["restarted_app_pid"]) and
            _app_status(stack).get("boot", {}).get("current") == "search_index"), 0.02)
        faults.inject(stack.state_dir, "port_conflict", "--kind", "foreign")
        _all_ended(stack.api, before, {"app-boot", "app-port"}, timeout_s=90)
        incs = _opened_since(stack.api, before)
        _judge_all_resolved(incs, res)
        res["checks"] = sorted({i["check"] for i in incs})
        res["mttr_ms"] = max(i.get("recovered_at") or 0 for i in incs) - onset
        res["incident"] = next(i["id"] for i in incs if i["check"] == "app-port")
        res["app_starts"] = _app_starts(stack) - starts
        if res["app_starts"] > MAX_APP_STARTS:
            res["failures"].append("the app was started %d times: a restart loop" %
                                   res["app_starts"])
    except (StackError, ApiError, faults.InjectError, StopIteration) as e:
        res["failures"].append(str(e) or "an incident is missing")
    finally:
        faults.inject(stack.state_dir, "port_conflict", "--undo")
        faults.inject(stack.state_dir, "slow_boot", "--undo")
    experiment.judge_steady_after(stack, baseline, res)
    return res


STORM_BUDGET = 3


def fault_storm(stack, baseline, log):
    res = _result("fault-storm", "missing_config")
    shipped = stack.config_text()
    text, n = re.subn(r"(?m)^(  - id: app-config\n    mode: missing_config\n)",
                      r"\g<1>    budget: { max_actions: %d }   # chaos/run fault-storm\n" %
                      STORM_BUDGET, shipped)
    before = newest_id(stack.api, "app-config")
    try:
        if n != 1:
            raise StackError("no app-config check in the run's config to give a budget")
        stack.reload(text)
        wait_for("app-config's budget at %d" % STORM_BUDGET, 10, lambda: next(
            (c["budget_remaining"] == STORM_BUDGET for c in stack.api.status()["checks"]
             if c["id"] == "app-config"), False))
        res["onset_at"] = now_ms()
        states = []
        last = before
        for _ in range(STORM_BUDGET + 3):
            faults.inject(stack.state_dir, "missing_config", "--kind", "delete")
            inc = _incident_after(stack.api, "app-config", last, timeout_s=30)
            states.append(inc["state"])
            last = inc["id"]
            if inc["state"] != "resolved":
                break
        res["states"] = states
        res["incident"] = last
        if states != ["resolved"] * STORM_BUDGET + ["escalated"]:
            res["failures"].append("with a budget of %d: %s, not %d heals and an escalation" % (
                STORM_BUDGET, states, STORM_BUDGET))
        esc = stack.api.incident(last)
        if "budget" not in esc.get("reason", ""):
            res["failures"].append("incident #%d escalated for '%s', not the budget" % (
                last, esc.get("reason")))
        check = next(c for c in stack.api.status()["checks"] if c["id"] == "app-config")
        res["hold_reason"] = check.get("hold_reason")
        if not check.get("held") or "budget" not in check.get("hold_reason", ""):
            res["failures"].append("app-config is not held with the budget as its reason: %s" %
                                   check.get("hold_reason"))
        time.sleep(2)  # held: no new incident, no action, while the fault stays
        if newest_id(stack.api, "app-config") != last:
            res["failures"].append("a new incident opened while the check was held")
        if os.path.exists(os.path.join(stack.stack, "app", "app.yaml")):
            res["failures"].append("app.yaml came back while the check was held")
    except (StackError, ApiError, faults.InjectError) as e:
        res["failures"].append(str(e))
    finally:
        faults.inject(stack.state_dir, "missing_config", "--undo")
        try:
            stack.reload(shipped)
        except StackError as e:
            res["failures"].append("putting the config back: %s" % e)
    experiment.judge_steady_after(stack, baseline, res)
    return res


SCENARIOS = {
    "network-outage": (network_outage, _needs_lab_model),
    "model-and-network": (model_and_network, _needs_lab_model),
    "disk-and-db": (disk_and_db, lambda stack: faults.needs_small_disk(stack)),
    "port-during-slow-boot": (port_during_slow_boot, lambda stack: None),
    "guardiand-killed": (guardiand_killed, _needs_started),
    "fault-storm": (fault_storm, _needs_started),
}


def run_scenario(stack, name, baseline, log):
    fn, needs = SCENARIOS[name]
    res = _result(name, "")
    why = needs(stack)
    if why:
        return dict(res, skipped=True, skip_reason=why)
    waited, problems = steady.wait_steady(stack, baseline, experiment.SETTLE_S)
    if problems:
        res["failures"].append("no steady state before the faults: " + "; ".join(problems))
        return res
    before_all = newest_id(stack.api)
    log("%s: starting" % name)
    res = fn(stack, baseline, log)
    judged = {res.get("incident"), res.get("dependent")}
    for other in stack.api.incidents(limit=100):
        if other["id"] > before_all and other["id"] not in judged:
            res["other_incidents"].append({"incident": other["id"], "check": other["check"],
                                           "mode": other["mode"], "state": other["state"],
                                           "cause": "scenario"})
    res["ok"] = not res["failures"]
    return res
