"""What chaos/run breaks for each mode: the chaos/inject kinds it cycles through, their extra
arguments, and what a stack must have for the fault to be made safely (else the mode is skipped
with the reason)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INJECT = os.path.join(ROOT, "chaos", "inject")

# The order of a run without MODE arguments: DESIGN.md's table.
MODES = ["db_corruption", "port_conflict", "slow_boot", "out_of_memory", "disk_full",
         "network_unreachable", "api_timeout", "missing_config", "invalid_credentials",
         "model_server_down"]

# The biggest filesystem chaos/run fills for disk_full: a bigger one is taken for a real disk.
DISK_FULL_MAX_BYTES = 1 << 30


class Fault:
    def __init__(self, mode, kinds, args=(), needs=None):
        self.mode = mode
        self.kinds = kinds        # repeat i uses kinds[i % len(kinds)]
        self.args = list(args)    # extra chaos/inject arguments
        self.needs = needs        # fn(stack) -> why this fault cannot be made there, or None

    def kind(self, repeat):
        return self.kinds[repeat % len(self.kinds)]


def needs_small_disk(stack):
    size = stack.filesystem_bytes("logs")
    if size > DISK_FULL_MAX_BYTES:
        return ("the stack's logs/ is on a %.1f GiB filesystem; chaos/run fills only a "
                "size-limited one (mount a tmpfs on %s before seeding it, or use --start as "
                "root)" % (size / (1 << 30), stack.stack))
    return None


def _needs_network(stack):
    if os.geteuid() != 0:
        return "needs root (a network namespace: chaos/stack/netlab.py)"
    if stack.netlab_record() is None:
        return "no private network for the stack (chaos/stack/netlab.py up DIR, or --start)"
    return None


FAULTS = {f.mode: f for f in [
    Fault("db_corruption", ["pages", "header", "stale-wal"]),
    Fault("port_conflict", ["foreign", "stale"]),
    # the slow chunk outlasts the boot deadline many times over: only Guardian ends it
    Fault("slow_boot", ["search_index"], ["--delay-ms", "20000"]),
    # over the shipped config's rss_limit_mb (256)
    Fault("out_of_memory", ["cache", "leak"], ["--mb", "384"]),
    Fault("disk_full", ["mixed", "logs"], needs=needs_small_disk),
    Fault("network_unreachable", ["link", "drop"], needs=_needs_network),
    Fault("api_timeout", ["hang", "fail"]),
    Fault("missing_config", ["delete", "wrong-type"]),
    Fault("invalid_credentials", ["expire", "revoke", "rotate"]),
    Fault("model_server_down", ["hang", "error"]),
]}


class InjectError(Exception):
    pass


def inject(state_dir, mode, *args):
    """Runs chaos/inject MODE --state-dir DIR ARGS; its JSON answer."""
    r = subprocess.run([sys.executable, INJECT, mode, "--state-dir", state_dir, *args],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise InjectError("chaos/inject %s %s: %s" % (mode, " ".join(args),
                                                      r.stderr.strip() or "exit %d" % r.returncode))
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise InjectError("chaos/inject %s printed no JSON: %r" % (mode, r.stdout[:200]))
