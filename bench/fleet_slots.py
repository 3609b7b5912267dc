#!/usr/bin/env python3
"""Slot acquisition latency under contention (docs/fleet.md, "Measured limits"): starts a real
3-member etcd cluster on loopback (tests/integration/etcd_cluster.py) and runs
build/bin/fleet_slots_bench against it: N clients, each with its own lease and connection, ask
for a slot at once; `free` (max_concurrent N: nobody waits for a turn) and `handoff`
(max_concurrent 1: from one client's release to the next one's grant). Prints the machine and
the result as JSON.

    bench/fleet_slots.py [--clients 100] [--rounds 5] [--bin build/bin]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from common import ROOT, machine_info

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from etcd_cluster import EtcdCluster  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        cluster = EtcdCluster(os.path.join(tmp, "etcd"))
        try:
            cluster.start()
            state = os.path.join(tmp, "state")
            os.makedirs(state)
            r = subprocess.run([os.path.join(args.bin, "fleet_slots_bench"),
                                ",".join(cluster.endpoints()), state, str(args.clients),
                                str(args.rounds)], capture_output=True, text=True, timeout=600)
        finally:
            cluster.close()
    if r.returncode != 0:
        sys.exit("fleet_slots_bench failed (%d): %s" % (r.returncode, r.stderr))
    print(json.dumps({"machine": machine_info(), "result": json.loads(r.stdout.strip().splitlines()[-1])}, indent=2))


if __name__ == "__main__":
    main()
