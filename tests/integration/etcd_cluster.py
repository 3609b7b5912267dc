"""A real etcd cluster (Debian's etcd-server) on loopback ports for fleet tests: N members
started by the test, each killable and startable again on its own data, and a small client for
etcd's JSON gateway (keys and values base64, as the v3 API has them)."""

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

from ports import free_port

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s):
    return base64.b64decode(s).decode()


class EtcdCluster:
    def __init__(self, folder, size=3):
        if not os.access(ETCD, os.X_OK):
            raise RuntimeError("etcd is not installed (scripts/setup installs etcd-server)")
        self.folder = folder
        self.names = ["m%d" % i for i in range(size)]
        self.client = {n: free_port() for n in self.names}
        self.peer = {n: free_port() for n in self.names}
        self.procs = {}
        self.token = "guardian-test-%d" % os.getpid()

    def endpoints(self):
        return ["http://127.0.0.1:%d" % self.client[n] for n in self.names]

    def _argv(self, name):
        cluster = ",".join("%s=http://127.0.0.1:%d" % (n, self.peer[n]) for n in self.names)
        client = "http://127.0.0.1:%d" % self.client[name]
        peer = "http://127.0.0.1:%d" % self.peer[name]
        # Short heartbeats and elections: a lost leader is replaced within about a second.
        return [ETCD, "--logger=zap", "--name=" + name,
                "--data-dir=" + os.path.join(self.folder, name),
                "--listen-client-urls=" + client, "--advertise-client-urls=" + client,
                "--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
                "--initial-cluster=" + cluster, "--initial-cluster-state=new",
                "--initial-cluster-token=" + self.token,
                "--heartbeat-interval=50", "--election-timeout=500",
                "--log-outputs=" + os.path.join(self.folder, name + ".log")]

    def start(self, name=None):
        for n in ([name] if name else self.names):
            os.makedirs(self.folder, exist_ok=True)
            self.procs[n] = subprocess.Popen(self._argv(n), stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if name is None:
            self.wait_healthy()

    def kill(self, name):
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)

    def close(self):
        for n in list(self.procs):
            self.kill(n)

    def wait_healthy(self, timeout=30):
        """Until a write goes through (a leader, a quorum)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.put("/guardian-test/ping", "1")
                return
            except (OSError, RuntimeError) as e:
                if time.monotonic() > deadline:
                    raise RuntimeError("etcd cluster not healthy within %ds: %s" % (timeout, e))
                time.sleep(0.1)

    # --- the JSON gateway ------------------------------------------------------------------

    def call(self, path, body, timeout=3):
        last = None
        for n in self.names:
            if n not in self.procs:
                continue
            req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.client[n], path),
                                         data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=timeout) as r:
                    answer = json.loads(r.read())
                if "error" in answer:
                    raise RuntimeError(answer["error"])
                return answer
            except (OSError, urllib.error.URLError) as e:
                last = e
        raise RuntimeError("no etcd member answered %s: %s" % (path, last))

    def put(self, key, value, lease=None):
        body = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        return self.call("/v3/kv/put", body)

    def get(self, key, prefix=False):
        """{key: {"value", "lease", "create_revision", "mod_revision"}}"""
        body = {"key": b64(key)}
        if prefix:
            end = key[:-1] + chr(ord(key[-1]) + 1)
            body["range_end"] = b64(end)
        out = {}
        for kv in self.call("/v3/kv/range", body).get("kvs", []):
            out[unb64(kv["key"])] = {"value": unb64(kv.get("value", "")),
                                     "lease": int(kv.get("lease", 0)),
                                     "create_revision": int(kv.get("create_revision", 0)),
                                     "mod_revision": int(kv.get("mod_revision", 0))}
        return out
