"""The REST API as its clients meet it: salt-api serving eos_api, and calls over HTTP."""

import json
import urllib.error
import urllib.request

import attr
from saltfactories.bases import SaltDaemon
from saltfactories.daemons.api import SaltApi


@attr.s(kw_only=True, slots=True)
class EosApiDaemon(SaltApi):
    """salt-api serving eos_api: salt-factories only knows the ports of its own two modules."""

    def __attrs_post_init__(self):
        self.check_ports = [self.config["eos_api"]["port"]]
        SaltDaemon.__attrs_post_init__(self)


class Reply:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        self.json = json.loads(raw) if raw else None

    @property
    def data(self):
        assert self.json["status"] == "success", self.json
        return self.json["data"]

    @property
    def error(self):
        assert self.json["status"] == "error", self.json
        return self.json["error"]

    def __repr__(self):
        return f"Reply({self.status}, {self.raw[:400]!r})"


def call(base_url, method, path, body=None, token=None, raw=None, headers=None):
    if raw is None and body is not None:
        raw = json.dumps(body).encode()
    request = urllib.request.Request(base_url + path, data=raw, method=method)
    if raw is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("X-Auth-Token", token)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=180) as response:
            reply = Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as err:
        reply = Reply(err.code, err.headers, err.read())
    # Whatever happened, the client never sees Python's insides.
    assert b"Traceback" not in reply.raw and b'File "' not in reply.raw, reply
    return reply


def login(base_url, user):
    reply = call(
        base_url, "POST", "/login", {"username": user[0], "password": user[1], "eauth": "file"}
    )
    assert reply.status == 200, reply
    return reply.data["token"]
