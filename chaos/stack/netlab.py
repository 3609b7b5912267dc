#!/usr/bin/env python3
"""NetLab: a private network for network tests and the demo, made of real parts (root only): a network
namespace joined to this one by a veth pair on a private /24, a DNS server in it (dnsmasq,
answering NAME -> its address) and TCP listeners in it. Faults are made there: the link taken
down, all traffic to it dropped (nftables in the namespace), the route removed. Traffic goes
only to this namespace: an unreachable route for its /24 keeps it off the default route when
the link or its route is gone. close() removes everything, also after a failed test.

As a command, for the demo stack (DIR/stack/run/netlab.json records it for chaos/inject):
  chaos/stack/netlab.py up DIR [--octet N]   namespace guardian-demo, 10.231.N.0/24 (default
                                             254), dnsmasq answering upstream.demo, listeners on
                                             ports 8443 and 8444
  chaos/stack/netlab.py down DIR             removes it all
"""

import os
import random
import subprocess
import sys
import time


def run(*argv, check=True):
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, timeout=20)


def can_run():
    """None when a NetLab can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, nftables)"
    for tool in ("ip", "dnsmasq", "nft"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin")):
            return "needs %s (scripts/setup installs it)" % tool
    return None


class NetLab:
    def __init__(self, tmp, name="api.test", tag=None, octet=None):
        self.tag = tag or "g%d%d" % (os.getpid() % 10000, random.randint(0, 99))
        self.ns = "guardian-" + self.tag
        self.host_if, self.ns_if = "vh" + self.tag, "vn" + self.tag  # at most 15 characters
        used = run("ip", "-o", "-4", "addr").stdout
        if octet is None:
            octet = next(o for o in random.sample(range(10, 250), 240)
                         if " 10.231.%d." % o not in used)
        elif " 10.231.%d." % octet in used:
            raise RuntimeError("10.231.%d.0/24 is already in use here" % octet)
        self.host_ip, self.ip = "10.231.%d.1" % octet, "10.231.%d.2" % octet
        self.name = name
        self.procs = []
        self.pids = []  # processes of a lab loaded from its record (not our children)
        self.ports = []
        self.tmp = tmp
        try:
            run("ip", "netns", "add", self.ns)
            run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            run("ip", "link", "set", self.ns_if, "netns", self.ns)
            run("ip", "addr", "add", self.host_ip + "/24", "dev", self.host_if)
            run("ip", "link", "set", self.host_if, "up")
            # With the link down or its route gone, the /24 must not fall through to the
            # default route (traffic stays off every real network): a low-priority
            # unreachable route answers instead.
            self.subnet = "10.231.%d.0/24" % octet
            run("ip", "route", "add", "unreachable", self.subnet, "metric", "4000")
            self.ns_run("ip", "addr", "add", self.ip + "/24", "dev", self.ns_if)
            self.ns_run("ip", "link", "set", self.ns_if, "up")
            self.ns_run("ip", "link", "set", "lo", "up")
            self.spawn("dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                       "--bind-interfaces", "--listen-address=" + self.ip, "--port=53",
                       "--address=/%s/%s" % (name, self.ip),
                       "--pid-file=" + os.path.join(tmp, "dnsmasq-%s.pid" % self.tag),
                       "--log-facility=" + os.path.join(tmp, "dnsmasq-%s.log" % self.tag))
        except Exception:
            self.close()
            raise

    @property
    def dns(self):
        return "%s:53" % self.ip

    def ns_run(self, *argv, check=True):
        return run("ip", "netns", "exec", self.ns, *argv, check=check)

    def spawn(self, *argv):
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def listen(self, port):
        """A TCP listener (an HTTP server) on the namespace's address; returns its process."""
        p = self.spawn(sys.executable, "-m", "http.server", "--bind", self.ip, str(port))
        self.ports.append(port)
        deadline = time.time() + 10
        while time.time() < deadline:
            if str(port) in self.ns_run("ss", "-ltn", check=False).stdout:
                return p
            time.sleep(0.05)
        raise RuntimeError("nothing listens on %s:%d" % (self.ip, port))

    # --- faults --------------------------------------------------------------------------
    def link(self, up):
        run("ip", "link", "set", self.host_if, "up" if up else "down")

    def route(self, present, check=True):
        """The route to the namespace through the veth: removed, or put back."""
        run("ip", "route", "add" if present else "del", self.subnet, "dev", self.host_if,
            check=check)

    def drop(self, on):
        if on:
            self.ns_run("nft", "add", "table", "inet", "guardian_test")
            self.ns_run("nft", "add", "chain", "inet", "guardian_test", "input",
                        "{ type filter hook input priority 0 ; policy drop ; }")
        else:
            self.ns_run("nft", "delete", "table", "inet", "guardian_test", check=False)

    # --- a lab that outlives its command (the demo) ----------------------------------------
    def record(self):
        return {"ns": self.ns, "tag": self.tag, "host_if": self.host_if, "subnet": self.subnet,
                "ip": self.ip, "dns": self.dns, "name": self.name, "ports": self.ports,
                "pids": [p.pid for p in self.procs] + self.pids}

    @classmethod
    def from_record(cls, rec):
        lab = cls.__new__(cls)
        lab.ns, lab.tag, lab.host_if = rec["ns"], rec["tag"], rec["host_if"]
        lab.subnet, lab.ip, lab.name, lab.ports = rec["subnet"], rec["ip"], rec["name"], rec["ports"]
        lab.procs, lab.pids = [], rec["pids"]
        return lab

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        for pid in self.pids:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        run("ip", "netns", "del", self.ns, check=False)
        if getattr(self, "subnet", None):
            run("ip", "route", "del", "unreachable", self.subnet, "metric", "4000", check=False)
        run("ip", "link", "del", self.host_if, check=False)


def main(argv):
    import argparse
    import json
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["up", "down"])
    ap.add_argument("dir", help="the demo's state dir (chaos/demo --state-dir)")
    ap.add_argument("--octet", type=int, default=254)
    args = ap.parse_args(argv)
    record = os.path.join(args.dir, "stack", "run", "netlab.json")
    if args.action == "down":
        if os.path.exists(record):
            with open(record) as f:
                NetLab.from_record(json.load(f)).close()
            os.remove(record)
        print(json.dumps({"down": True}))
        return 0
    why = can_run()
    if why:
        sys.stderr.write("netlab: %s\n" % why)
        return 2
    if os.path.exists(record):
        sys.stderr.write("netlab: %s exists: already up (netlab down first)\n" % record)
        return 2
    os.makedirs(os.path.dirname(record), exist_ok=True)
    lab = NetLab(os.path.dirname(record), name="upstream.demo", tag="demo", octet=args.octet)
    try:
        for port in (8443, 8444):
            lab.listen(port)
    except Exception:
        lab.close()
        raise
    with open(record, "w") as f:
        json.dump(lab.record(), f)
    print(json.dumps(lab.record()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
