"""Free loopback ports, for tests and for the benchmarks that load etcd_cluster.py (outside the
test harness, so this module imports nothing of it)."""

import socket


def free_port():
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
