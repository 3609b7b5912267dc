#!/usr/bin/env python3
"""The CPU floor of a watchdog's idle probes on this machine (bench/README.md).

Usage: probe_floor.py [--harness DIR] [--seconds 30] [--scale 4,100,1000] [--json OUT]

Starts the peer harness's two HTTP fixtures (`python3 -m http.server`, the svc; the harness's
hangserver.py, the api) and its connection-counting acceptor, then runs probe_floor.c, the
cheapest client that makes the same probes as each idle configuration of bench/peer/run: a GET
to each HTTP fixture every 90 ms (the adapter's PROBE_MS) or every 1 s, and N - 4 connects a
second for N checks. Its CPU (utime+stime ÷ wall) is what those probes cost with nothing around
them: no scheduler, no parsing, no state. The rest of a watchdog's idle CPU is its own.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import guardian_adapter  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_answering(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                if s.recv(16):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"probe_floor: nothing answered on 127.0.0.1:{port}")


def build(out_dir):
    exe = os.path.join(out_dir, "probe_floor")
    src = os.path.join(HERE, "probe_floor.c")
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-Wall", "-Wextra", "-Werror", "-o", exe,
                    src], check=True)
    return exe


def configurations(scale, fast_ms):
    """(HTTP interval ms, connects a second) for each idle row bench/peer/run measures."""
    out = []
    for checks in scale:
        out.append((fast_ms, max(0, checks - 4)))  # the main run: svc, api fast; tcp connect
    out.append((1000, 0))  # everything on a 1 s cycle, tcp by the socket table (no connects)
    for checks in scale:
        if checks > 4:
            out.append((1000, checks - 4))  # the 1 s cycle connecting, as Monit does
    return sorted(set(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--harness", default=os.environ.get(
        "PEER_BENCH_DIR", os.path.join(ROOT, "..", "shared", "bench", "peer")))
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--scale", default="4,100,1000")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "build", "peer"))
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    harness = os.path.join(os.path.abspath(a.harness), "harness")
    if not os.path.exists(os.path.join(harness, "hangserver.py")):
        sys.exit(f"probe_floor: no harness at {a.harness} (--harness DIR)")
    sys.path.insert(0, harness)
    import measure  # the harness's Acceptor: the same listener the idle runs connect to

    os.makedirs(a.out_dir, exist_ok=True)
    exe = build(a.out_dir)
    scale = [int(x) for x in a.scale.split(",") if x]
    procs = []
    acc = measure.Acceptor()
    with tempfile.TemporaryDirectory() as www:
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write("ok\n")
        svc, api = free_port(), free_port()
        try:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "http.server", str(svc), "--bind", "127.0.0.1",
                 "--directory", www], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            procs.append(subprocess.Popen([sys.executable, os.path.join(harness, "hangserver.py"),
                                           str(api)]))
            wait_answering(svc)
            wait_answering(api)
            rows = []
            for http_ms, connects in configurations(scale, guardian_adapter.PROBE_MS):
                out = subprocess.run([exe, str(a.seconds), str(http_ms), str(acc.port),
                                      str(connects), str(svc), str(api)],
                                     capture_output=True, text=True)
                if out.returncode != 0:
                    sys.exit(f"probe_floor: {exe} failed ({out.returncode}): "
                             f"{out.stdout.strip()} {out.stderr.strip()}")
                r = json.loads(out.stdout)
                r.update({"http_ms": http_ms, "http_targets": 2, "connects_per_s": connects})
                print(f"probe floor: GET x2 every {http_ms} ms, {connects} connects/s: "
                      f"{r['cpu_pct_of_one_core']:.3f} % CPU", file=sys.stderr)
                rows.append(r)
        finally:
            for p in procs:
                p.terminate()
                p.wait()
            acc.close()
    doc = {"seconds": a.seconds, "rows": rows,
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    text = json.dumps(doc, indent=1)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
