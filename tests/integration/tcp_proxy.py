"""A TCP forwarder on loopback that a test can turn into a black hole: one host's road to etcd,
cut without touching etcd or the other hosts. While cut, connections are accepted (or kept) but
nothing is forwarded either way, as when packets are dropped on a partitioned network: the
client sees timeouts, not refusals."""

import select
import socket
import threading
import time


class TcpProxy:
    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.pairs = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def partition(self):
        """Nothing passes any more; connections already open go silent too."""
        self.cut.set()

    def heal(self):
        """Traffic flows again. Connections that were open during the cut are dropped (their
        requests timed out long ago); new ones are forwarded."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass
        self.cut.clear()

    def close(self):
        self.closed.set()
        self.heal()
        self.listener.close()

    def _accept(self):
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                with self.lock:
                    self.pairs.append((client, client))  # held open, never answered
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a, b):
        peers = {a: b, b: a}
        try:
            while not self.closed.is_set():
                if self.cut.is_set():
                    time.sleep(0.05)  # dropped on the floor: read nothing, send nothing
                    continue
                ready, _, _ = select.select([a, b], [], [], 0.1)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except (OSError, ValueError):  # ValueError: closed by heal() under select
            return
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass
