"""The demo stack chaos/run breaks and the guardiand watching it.

A state dir DIR holds the stack (DIR/stack, chaos/stack/seed's layout, what chaos/inject breaks)
and guardiand's state (DIR/guardian: its store and its API socket), as chaos/demo lays them out.
`Stack` reads a running one; `StartedStack` makes one for the run (chaos/run --start): the
shipped config/guardian.yaml with only its ports (free ones), playbook folder (absolute) and
action budget changed, on a size-limited tmpfs and beside a private network when run as root.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from .api import ApiError, GuardianApi

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class StackError(Exception):
    pass


def wait_for(what, timeout_s, fn, interval_s=0.05):
    """Polls fn() until it returns something truthy; raises StackError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last_error = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except (ApiError, OSError, ValueError) as e:
            last_error = e
        if time.monotonic() > deadline:
            raise StackError("timed out after %g s waiting for %s%s" % (
                timeout_s, what, " (last error: %s)" % last_error if last_error else ""))
        time.sleep(interval_s)


class Stack:
    """A demo stack and its guardiand, found in DIR (chaos/demo --state-dir DIR)."""

    def __init__(self, state_dir, socket_path=None):
        self.state_dir = os.path.abspath(state_dir)
        self.stack = os.path.join(self.state_dir, "stack")
        self.guardian_dir = os.path.join(self.state_dir, "guardian")
        self.api = GuardianApi(socket_path or os.path.join(self.guardian_dir, "guardian.sock"))
        self.lab = None  # the private network, when one is up (stack/run/netlab.json)

    def describe(self):
        """Why this stack cannot be used, or None."""
        if not os.path.isdir(self.stack):
            return "no demo stack in %s (start one with chaos/demo --state-dir %s, or use " \
                   "--start)" % (self.stack, self.state_dir)
        try:
            self.api.health()
        except ApiError as e:
            return "%s; start the demo with chaos/demo --state-dir %s, or use --start" % (
                e, self.state_dir)
        return None

    def registry(self):
        with open(os.path.join(self.stack, "run", "ports.json")) as f:
            return json.load(f)

    def port_of(self, service):
        return int(self.registry()["services"][service]["port"])

    def app_get(self, path, timeout_s=5):
        """(HTTP status, JSON body) of GET path on the app's current port."""
        url = "http://127.0.0.1:%d%s" % (self.port_of("app"), path)
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"{}")
            except ValueError:
                return e.code, {}
            finally:
                e.close()

    def netlab_record(self):
        path = os.path.join(self.stack, "run", "netlab.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def filesystem_bytes(self, folder):
        st = os.statvfs(os.path.join(self.stack, folder))
        return st.f_blocks * st.f_frsize


def free_port_base(n):
    """A loopback port with the n - 1 ports after it free too (each checked by binding)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        try:
            for p in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise StackError("no %d free loopback ports in a row" % n)


def stop_process(proc, grace_s=10):
    """SIGTERM, then SIGKILL after grace_s; waits for the exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# The shipped config's fixed ports, which a started stack moves to free ones.
SHIPPED_PORTS = {"app": 8080, "app_last": 8089, "primary": 9101, "backup": 9102, "auth": 9103,
                 "model": 11434}


def replace_ports(text, ports, where, require=True):
    """Every shipped port in text moved to this run's; with require, each must be there."""
    for name, old in SHIPPED_PORTS.items():
        if name not in ports:
            continue
        text, n = re.subn(r"(?<![0-9])%d(?![0-9])" % old, str(ports[name]), text)
        if n == 0 and require:
            raise StackError("%s: port %d (%s) not found to move" % (where, old, name))
    return text


def run_config(shipped_text, ports, budget_actions, lab=None):
    """config/guardian.yaml's text made into this run's: free ports, the playbooks' absolute
    folder, the action budget, and the network check when a private network is up."""
    text = replace_ports(shipped_text, ports, "config/guardian.yaml")
    playbooks = json.dumps(os.path.join(ROOT, "playbooks"))
    text, n = re.subn(r"(?m)^playbook_dirs: \[\.\./playbooks\]$",
                      "playbook_dirs: [%s]" % playbooks, text)
    text, m = re.subn(r"(?m)^(  max_actions: )\d+$", r"\g<1>%d" % budget_actions, text)
    if n != 1 or m != 1:
        raise StackError("config/guardian.yaml: playbook_dirs or budget.max_actions is not "
                         "where chaos/run expects it")
    if lab is not None:
        # A second model server, on the private network (in its namespace): a check of it that
        # depends on app-net, so that a network outage is app-net's alone to handle.
        ip_bin = shutil.which("ip") or "/usr/sbin/ip"
        service = """  # chaos/run: a model server on the stack's private network (chaos/stack/netlab.py)
  - name: labmodel
    argv: [%s, netns, exec, %s, %s, %s, --host, %s, --status-file,
           "${GUARDIAN_DEMO_DIR}/run/labmodel.json", model, --port, "%d", --models, "llama3.2:1b"]
    status_file: "${GUARDIAN_DEMO_DIR}/run/labmodel.json"   # ready once it listens
    stop_grace_ms: 1000
""" % (json.dumps(ip_bin), json.dumps(lab.ns), json.dumps(sys.executable),
       json.dumps(os.path.join(ROOT, "chaos", "stack", "upstream")), json.dumps(lab.ip),
       lab.model_port)
        text, n = re.subn(r"(?m)^checks:$", lambda m: service + "\nchecks:", text)
        if n != 1:
            raise StackError("config/guardian.yaml: no top-level checks: to add the lab's to")
        text += """
  # chaos/run: the model server on the private network; a network outage explains its failure
  - id: lab-model
    mode: model_server_down
    interval_ms: 500
    depends_on: [app-net]
    params:
      service: app
      server: labmodel
      url: http://%s:%d
      model: llama3.2:1b
      timeout_ms: 1000
      generate_deadline_ms: 5000
      ready_timeout_ms: 10000
""" % (lab.ip, lab.model_port)
        text += """
  # chaos/run: the stack's private network (chaos/stack/netlab.py), made for this run
  - id: app-net
    mode: network_unreachable
    interval_ms: 250
    params:
      service: app
      targets: [%s, %s]
      dns_servers: [%s]
      timeout_ms: 250
""" % (json.dumps("%s:%d" % (lab.name, lab.ports[0])), json.dumps("%s:%d" % (lab.ip, lab.ports[1])),
       json.dumps(lab.dns))
    return text


class StartedStack(Stack):
    """A stack and guardiand chaos/run starts itself and stops at the end (close())."""

    def __init__(self, state_dir, bin_dir, budget_actions=1000, disk=True, net=True):
        super().__init__(state_dir)
        self.bin_dir = os.path.abspath(bin_dir)
        self.budget_actions = budget_actions
        self.want_disk, self.want_net = disk, net
        self.mounted = False
        self.proc = None
        self.log = None
        self.config_path = os.path.join(self.state_dir, "guardian.yaml")
        self.log_path = os.path.join(self.state_dir, "guardiand.log")
        self.notes = []  # what could not be set up, and why (a mode then is skipped)

    def start(self):
        for b in ("guardiand", "demo-app"):
            if not os.access(os.path.join(self.bin_dir, b), os.X_OK):
                raise StackError("%s/%s is not built (scripts/build default)" % (self.bin_dir, b))
        os.makedirs(self.stack, exist_ok=True)
        if os.listdir(self.stack):
            raise StackError("%s is not empty: --start lays out a new stack" % self.stack)
        if self.want_disk:
            if os.geteuid() != 0:
                self.notes.append("disk_full: needs root to mount a size-limited tmpfs")
            else:
                # A real size-limited filesystem under the whole stack, for disk_full.
                r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0755", "tmpfs",
                                    self.stack], capture_output=True, text=True)
                if r.returncode != 0:
                    self.notes.append("disk_full: mount tmpfs failed: %s" % r.stderr.strip())
                else:
                    self.mounted = True
        subprocess.run([os.path.join(ROOT, "chaos", "stack", "seed"), self.stack], check=True,
                       stdout=subprocess.DEVNULL)
        base = free_port_base(10)
        ports = {"app": base, "app_last": base + 9}
        up = free_port_base(4)
        ports.update(primary=up, backup=up + 1, auth=up + 2, model=up + 3)
        for name in ("app.yaml", "app.defaults.yaml"):
            path = os.path.join(self.stack, "app", name)
            if os.path.exists(path):
                with open(path) as f:
                    text = replace_ports(f.read(), ports, path, require=False)
                with open(path, "w") as f:
                    f.write(text)
        if self.want_net:
            self._net_up()
        with open(os.path.join(ROOT, "config", "guardian.yaml")) as f:
            shipped = f.read()
        with open(self.config_path, "w") as f:
            f.write(run_config(shipped, ports, self.budget_actions, self.lab))
        self._spawn()

        def ready():
            if self.proc.poll() is not None:
                raise StackError("guardiand exited with %d; its log: %s" % (
                    self.proc.returncode, self.log_path))
            st = self.api.status()
            return all(s.get("state") == "ready" for s in st.get("services", [])) and \
                st.get("open_incidents") == 0
        wait_for("guardiand and the demo stack to be ready", 60, ready, 0.1)

    def _spawn(self):
        env = dict(os.environ, GUARDIAN_STATE_DIR=self.guardian_dir, GUARDIAN_DEMO_DIR=self.stack,
                   GUARDIAN_DEMO_BIN=os.path.join(self.bin_dir, "demo-app"),
                   GUARDIAN_UPSTREAM=os.path.join(ROOT, "chaos", "stack", "upstream"))
        if self.log is None:
            self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(self.bin_dir, "guardiand"), "--config", self.config_path],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)

    def kill_guardiand(self):
        """SIGKILL, as a crash or the OOM killer would: no clean stop, the services run on."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def restart_guardiand(self):
        """Starts guardiand again on the same config and state, as its supervisor would."""
        self._spawn()
        wait_for("guardiand to answer again", 30,
                 lambda: self.proc.poll() is None and self.api.health(), 0.05)

    def config_text(self):
        with open(self.config_path) as f:
            return f.read()

    def reload(self, text):
        """Writes the run's config and has guardiand reload it (POST /v1/reload)."""
        with open(self.config_path + ".tmp", "w") as f:
            f.write(text)
        os.replace(self.config_path + ".tmp", self.config_path)
        try:
            self.api.request("POST", "/v1/reload", {})
        except ApiError as e:
            raise StackError("reload refused: %s" % e)

    def lab_model_port(self):
        return self.lab.model_port

    def _net_up(self):
        sys.path.insert(0, os.path.join(ROOT, "chaos", "stack"))
        from netlab import NetLab, can_run
        why = can_run()
        if why:
            self.notes.append("network_unreachable: " + why)
            return
        lab = NetLab(os.path.join(self.stack, "run"), name="upstream.chaos")
        try:
            base = free_port_base(3)
            for p in (base, base + 1):
                lab.listen(p)
            lab.model_port = base + 2  # guardiand's labmodel service listens there
        except Exception:
            lab.close()
            raise
        self.lab = lab
        with open(os.path.join(self.stack, "run", "netlab.json"), "w") as f:
            json.dump(lab.record(), f)

    def close(self):
        """Stops guardiand (it stops the stack's services), the private network, the tmpfs.
        Safe to call more than once, and after a failed start."""
        if self.proc is not None:
            stop_process(self.proc, 15)
            self.proc = None
        if self.log:
            self.log.close()
            self.log = None
        if self.lab is not None:
            self.lab.close()
            self.lab = None
        if self.mounted:
            subprocess.run(["umount", "-l", self.stack], check=False)
            self.mounted = False
