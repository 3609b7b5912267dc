"""Several guardiands on one real etcd cluster, for fleet tests: each host has its own state
dir, config and API socket, and the same fleet name."""

import os
import sqlite3

from etcd_cluster import EtcdCluster
from harness import GOOD_CONFIG, GuardianTestCase, read_text


class Host:
    def __init__(self, test, name):
        self.name = name
        self.state_dir = test.path("state-" + name)
        self.config_path = test.path(name + ".yaml")
        self.app, _ = test.make_app_file(name)
        self.daemon = None

    @property
    def socket(self):
        return os.path.join(self.state_dir, "guardian.sock")

    def events(self, *kinds):
        db = sqlite3.connect(os.path.join(self.state_dir, "guardian.db"))
        try:
            marks = ",".join("?" * len(kinds))
            return db.execute("SELECT at, kind, detail FROM events WHERE kind IN (%s) ORDER BY id"
                              % marks, kinds).fetchall()
        finally:
            db.close()


class FleetHostsTestCase(GuardianTestCase):
    """A 3-member etcd cluster started for each test, and start_hosts() for the guardiands."""

    def setUp(self):
        super().setUp()
        self.etcd = EtcdCluster(self.path("etcd"))
        self.addCleanup(self.etcd.close)
        self.etcd.start()

    def start_hosts(self, n=3, playbook="fleet_restore", budgets=None, endpoints=None, **top):
        """`endpoints`: host name -> its etcd URLs (a host behind a TcpProxy, say); `top`: more
        top-level config (playbook_dirs, retry, ...)."""
        self.hosts = [Host(self, "web-%d" % i) for i in range(1, n + 1)]
        for h in self.hosts:
            urls = (endpoints or {}).get(h.name) or self.etcd.endpoints()
            fleet = {"name": "shop", "host": h.name, "endpoints": urls,
                     "lease_ttl_s": 6, "reconnect": {"base_ms": 200, "max_ms": 1000},
                     "budgets": budgets or {"default": {"max_concurrent": 1, "min_healthy": 0}}}
            checks = [self.check("app", h.app, playbook=playbook)]
            self.write_config(checks, path=h.config_path, test_playbooks=True, fleet=fleet,
                              state_dir=h.state_dir, **top)
            h.daemon = self.start_daemon(h.config_path, wait_ready=False)
        self.daemon = self.hosts[0].daemon  # whose log tail a failed wait shows
        for h in self.hosts:
            self.wait_fleet(h, "connected")
            # The good file kept: the playbook restores it.
            versions = os.path.join(h.state_dir, "checks", "app", "versions")
            self.wait_for(lambda: os.path.isdir(versions) and any(
                read_text(os.path.join(versions, v)) == GOOD_CONFIG for v in os.listdir(versions)),
                what="%s to keep a good version" % h.name, daemon=h.daemon)

    def fleet_state(self, h):
        r = self.api("GET", "/v1/status", socket_path=h.socket)
        return r.status == 200 and r.json.get("fleet", {}).get("state")

    def wait_fleet(self, h, state, timeout=30):
        self.wait_for(lambda: self.fleet_state(h) == state, timeout,
                      "%s fleet state %s" % (h.name, state), daemon=h.daemon)

    def host_incidents(self, h):
        return self.cli("incidents", "--check", "app", state_dir=h.state_dir)

