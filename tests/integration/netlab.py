"""NetLab: a private network for network tests, made of real parts (root only): a network
namespace joined to this one by a veth pair on a private /24, a DNS server in it (dnsmasq,
answering NAME -> its address) and TCP listeners in it. Faults are made there: the link taken
down, all traffic to it dropped (nftables in the namespace), the route removed. Traffic goes
only to this namespace: an unreachable route for its /24 keeps it off the default route when
the link or its route is gone. close() removes everything, also after a failed test."""

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
    def __init__(self, tmp, name="api.test"):
        self.tag = "g%d%d" % (os.getpid() % 10000, random.randint(0, 99))
        self.ns = "guardian-" + self.tag
        self.host_if, self.ns_if = "vh" + self.tag, "vn" + self.tag  # at most 15 characters
        used = run("ip", "-o", "-4", "addr").stdout
        octet = next(o for o in random.sample(range(10, 250), 240)
                     if " 10.231.%d." % o not in used)
        self.host_ip, self.ip = "10.231.%d.1" % octet, "10.231.%d.2" % octet
        self.name = name
        self.procs = []
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
        deadline = time.time() + 10
        while time.time() < deadline:
            if str(port) in self.ns_run("ss", "-ltn", check=False).stdout:
                return p
            time.sleep(0.05)
        raise RuntimeError("nothing listens on %s:%d" % (self.ip, port))

    # --- faults --------------------------------------------------------------------------
    def link(self, up):
        run("ip", "link", "set", self.host_if, "up" if up else "down")

    def route(self, present):
        """The route to the namespace through the veth: removed, or put back."""
        run("ip", "route", "del" if not present else "add", self.subnet, "dev", self.host_if,
            check=present)

    def drop(self, on):
        if on:
            self.ns_run("nft", "add", "table", "inet", "guardian_test")
            self.ns_run("nft", "add", "chain", "inet", "guardian_test", "input",
                        "{ type filter hook input priority 0 ; policy drop ; }")
        else:
            self.ns_run("nft", "delete", "table", "inet", "guardian_test", check=False)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        run("ip", "netns", "del", self.ns, check=False)
        if getattr(self, "subnet", None):
            run("ip", "route", "del", "unreachable", self.subnet, "metric", "4000", check=False)
        run("ip", "link", "del", self.host_if, check=False)
