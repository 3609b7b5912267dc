"""A client of guardiand's HTTP API on its Unix socket (docs/api.md), with http.client."""
import http.client
import json
import socket
import urllib.parse


class ApiError(Exception):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class GuardianApi:
    def __init__(self, socket_path, timeout_s=10):
        self.socket_path = socket_path
        self.timeout_s = timeout_s

    def request(self, method, path, body=None):
        conn = _UnixConnection(self.socket_path, self.timeout_s)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            raw = r.read()
        except OSError as e:
            raise ApiError("guardiand's API (%s) cannot be reached: %s" % (self.socket_path, e))
        finally:
            conn.close()
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            raise ApiError("%s %s answered %d with no JSON" % (method, path, r.status))
        if r.status >= 400:
            raise ApiError("%s %s answered %d: %s" % (method, path, r.status,
                                                      doc.get("error", raw[:200])))
        return doc

    def health(self):
        return self.request("GET", "/v1/health")

    def status(self):
        return self.request("GET", "/v1/status")

    def incidents(self, **query):
        q = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        return self.request("GET", "/v1/incidents" + ("?" + q if q else ""))["incidents"]

    def incident(self, incident_id):
        doc = self.request("GET", "/v1/incidents/%d" % incident_id)
        return doc.get("incident", doc)

    def hold(self, check, reason):
        return self.request("POST", "/v1/checks/%s/hold" % check, {"reason": reason})

    def release(self, check):
        return self.request("POST", "/v1/checks/%s/release" % check)
