"""The chef_server principal source against a multi-tenant (Chef Server 12+) API.

No Chef Server 12 can run on this machine, so `FakeChefServer12` stands in for it: a real HTTP
server on loopback that serves the documented shapes (`principals[]` with several keys and
`org_member`, org `guid`, groups with `users`/`clients`/`groups`) and, like the real one,
refuses any request not signed by the superuser (verified with `pushd.chefauth`).
Single-tenant behaviour is tested against a real goiardi in test_identity_goiardi.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pushd import chefauth
from pushd.errors import AuthError
from pushd.identity import ChefServerSource, ChefServerUnavailable, authz
from pushd.identity.authz import (
    CLIENT_NODE_MISMATCH,
    forbidden_message,
    not_a_node,
    user_config_refused,
)

ACME_GUID = "0123456789abcdef0123456789abcdef"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


class FakeChefServer12:
    """Stand-in for a Chef Server 12 API (outside this machine), with request counting."""

    def __init__(self, superuser_key: rsa.RSAPrivateKey, keys: dict[str, rsa.RSAPrivateKey]):
        self.superuser_public = public_pem(superuser_key)
        self.hits: Counter[str] = Counter()
        self.documents: dict[str, Any] = {}
        self.special: dict[str, str] = {}
        self._build(keys)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _build(self, keys: dict[str, rsa.RSAPrivateKey]) -> None:
        def principal(name: str, kind: str, key: str, org_member: bool = True) -> dict:
            return {"name": name, "public_key": public_pem(keys[key]), "type": kind,
                    "authz_id": f"{name}-authz", "org_member": org_member}

        docs = self.documents
        for org, guid in (("acme", ACME_GUID), ("plain", "f" * 32)):
            docs[f"/organizations/{org}"] = {"name": org, "full_name": org.title(), "guid": guid}
            docs[f"/organizations/{org}/principals/alice"] = {"principals": [
                principal("alice", "user", "alice"), principal("alice", "user", "alice2")]}
            docs[f"/organizations/{org}/principals/outsider"] = {"principals": [
                principal("outsider", "user", "outsider", org_member=False)]}
            docs[f"/organizations/{org}/principals/twin"] = {"principals": [
                principal("twin", "user", "alice"), principal("twin", "client", "node7")]}
            for name in ("carol", "dave"):
                docs[f"/organizations/{org}/principals/{name}"] = {"principals": [
                    principal(name, "user", name)]}
            for name in ("node7", "node8"):
                docs[f"/organizations/{org}/principals/{name}"] = {"principals": [
                    principal(name, "client", name)]}

        def group(org: str, name: str, users=(), clients=(), groups=()) -> None:
            docs[f"/organizations/{org}/groups/{name}"] = {
                "actors": [*users, *clients], "users": list(users), "clients": list(clients),
                "groups": list(groups), "orgname": org, "name": name, "groupname": name}

        # acme: reader/writer groups exist, nested and cyclic.
        group("acme", "admins", users=["alice"])
        group("acme", "pushy_job_writers", groups=["deployers"])
        group("acme", "deployers", clients=["node7"], groups=["pushy_job_writers", "ghost"])
        group("acme", "pushy_job_readers", users=["carol", "alice"], groups=["deployers"])
        # plain: only the default admins group.
        group("plain", "admins", users=["alice"])
        self.special = {
            "/organizations/broken": "500",
            "/organizations/moved": "redirect",
            "/organizations/slow": "slow",
            "/organizations/garbage": "not-json",
        }

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path
        self.hits[path] += 1
        try:
            chefauth.verify_request(
                "GET", path, dict(request.headers.items()), b"",
                lambda user: [self.superuser_public] if user == "pivotal" else None,
            )
        except AuthError as err:
            return self.reply(request, err.status, {"error": [err.message]})
        mode = self.special.get(path)
        if mode == "500":
            return self.reply(request, 500, {"error": ["internal"]})
        if mode == "redirect":
            request.send_response(302)
            request.send_header("Location", self.url + "/organizations/acme")
            request.send_header("Content-Length", "0")
            request.end_headers()
            return None
        if mode == "slow":
            time.sleep(1.5)
            return self.reply(request, 200, {"guid": ACME_GUID})
        if mode == "not-json":
            return self.reply(request, 200, b"<html>maintenance</html>")
        if path in self.documents:
            return self.reply(request, 200, self.documents[path])
        return self.reply(request, 404, {"error": ["not found"]})

    @staticmethod
    def reply(request: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        try:
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    names = ("pivotal", "alice", "alice2", "outsider", "carol", "dave", "node7", "node8")
    return {name: new_key() for name in names}


@pytest.fixture(scope="module")
def chef12(keys: dict[str, rsa.RSAPrivateKey]) -> Iterator[FakeChefServer12]:
    server = FakeChefServer12(keys["pivotal"], keys)
    yield server
    server.close()


@pytest.fixture
def source(chef12: FakeChefServer12, keys: dict[str, rsa.RSAPrivateKey]) -> ChefServerSource:
    return ChefServerSource(chef12.url, "pivotal", keys["pivotal"], timeout=0.5)


def test_multi_tenant_server_gives_org_guids(source: ChefServerSource) -> None:
    org = source.org("acme")
    assert source.tenancy == "multi"
    assert org is not None and (org.name, org.id) == ("acme", ACME_GUID)
    assert source.org("nonexistent") is None


def test_knife_style_url_with_organization_suffix_is_accepted(
    chef12: FakeChefServer12, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    source = ChefServerSource(chef12.url + "/organizations/acme/", "pivotal", keys["pivotal"])
    assert source.org("plain").id == "f" * 32


def test_every_key_of_a_principal_can_sign(
    source: ChefServerSource, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    alice = source.principal("acme", "alice")
    assert alice is not None
    assert (alice.kind, alice.org_member, alice.authz_id) == ("user", True, "alice-authz")
    assert len(alice.public_keys) == 2
    path = "/organizations/acme/pushy/jobs"
    for key_name in ("alice", "alice2"):
        headers = chefauth.sign_request("GET", path, b"", "alice", keys[key_name])
        verified = chefauth.authenticate_request(
            "GET", path, headers, b"", lambda _u: alice.public_keys
        )
        assert verified.public_key.public_numbers() == keys[key_name].public_key().public_numbers()


def test_client_wins_when_a_user_shares_its_name(
    source: ChefServerSource, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    twin = source.principal("acme", "twin")
    assert twin is not None and twin.kind == "client"
    assert twin.public_keys == (public_pem(keys["node7"]),)


def test_user_outside_the_org_is_known_but_not_a_member(source: ChefServerSource) -> None:
    outsider = source.principal("acme", "outsider")
    assert outsider is not None and outsider.org_member is False
    assert not authz.can_read(source, source.org("acme"), outsider)
    assert source.principal("acme", "nobody") is None


@pytest.mark.parametrize(
    ("org_name", "expected"),
    [
        # readers and writers groups exist; membership through nested, cyclic groups
        ("acme", {"alice": (True, False), "carol": (True, False), "dave": (False, False),
                  "node7": (True, True), "node8": (False, False)}),
        # no pushy groups: everyone reads, admins write
        ("plain", {"alice": (True, True), "carol": (True, False), "dave": (True, False),
                   "node7": (True, False), "node8": (True, False)}),
    ],
)
def test_read_and_write_rules(source: ChefServerSource, org_name: str, expected: dict) -> None:
    org = source.org(org_name)
    actual = {}
    for name in expected:
        principal = source.principal(org_name, name)
        assert principal is not None
        actual[name] = (authz.can_read(source, org, principal),
                        authz.can_write(source, org, principal))
    assert actual == expected


def test_config_endpoint_rules(source: ChefServerSource) -> None:
    org = source.org("acme")
    node7, dave, carol = (source.principal("acme", n) for n in ("node7", "dave", "carol"))
    assert authz.can_read_config(source, org, node7, "node7") is None
    assert authz.can_read_config(source, org, node7, "node8") == CLIENT_NODE_MISMATCH
    assert authz.can_read_config(source, org, node7, "node8",
                                 validate_client_node_name=False) is None
    assert authz.can_read_config(source, org, node7, "ghost", validate_client_node_name=False
                                 ) == not_a_node("acme", "ghost")  # fmt: skip
    # Users get no node's session unless the server allows it...
    assert authz.can_read_config(source, org, carol, "node8") == user_config_refused("carol")
    # ...and then only readers, and only for an existing client.
    allowed = {"allow_user_node_config": True}
    assert authz.can_read_config(source, org, carol, "node8", **allowed) is None
    assert authz.can_read_config(source, org, carol, "ghost", **allowed) == not_a_node(
        "acme", "ghost")
    assert authz.can_read_config(source, org, carol, "alice", **allowed) == not_a_node(
        "acme", "alice")  # a user's name is not a node
    assert authz.can_read_config(source, org, dave, "node8", **allowed) == forbidden_message(
        "dave")
    assert forbidden_message("dave") == (
        "User or client 'dave' does not have access to that action on this server."
    )


def test_lookups_are_cached_for_the_ttl(
    chef12: FakeChefServer12, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    clock = Clock()
    source = ChefServerSource(chef12.url, "pivotal", keys["pivotal"], cache_ttl=5, clock=clock)
    path = "/organizations/plain/principals/carol"
    before = chef12.hits[path]
    source.principal("plain", "carol")
    source.principal("plain", "carol")
    assert chef12.hits[path] == before + 1
    source.principal("plain", "nobody-at-all")
    source.principal("plain", "nobody-at-all")
    assert chef12.hits["/organizations/plain/principals/nobody-at-all"] == 1  # misses cached too
    clock.now += 5.5
    source.principal("plain", "carol")
    assert chef12.hits[path] == before + 2


@pytest.mark.parametrize(
    ("org_name", "message"),
    [("broken", "HTTP 500"), ("moved", "HTTP 302"), ("slow", "timed out"),
     ("garbage", "did not answer JSON")],
)
def test_upstream_failures_are_unavailable(
    chef12: FakeChefServer12, keys: dict[str, rsa.RSAPrivateKey], org_name: str, message: str
) -> None:
    source = ChefServerSource(chef12.url, "pivotal", keys["pivotal"], timeout=0.5,
                              tenancy="multi")
    target_hits = chef12.hits["/organizations/acme"]
    with pytest.raises(ChefServerUnavailable, match=message):
        source.org(org_name)
    assert chef12.hits["/organizations/acme"] == target_hits  # the redirect was not followed


def test_superuser_refused_is_unavailable(
    chef12: FakeChefServer12, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    source = ChefServerSource(chef12.url, "pivotal", keys["dave"])
    with pytest.raises(ChefServerUnavailable, match="refused superuser 'pivotal'"):
        source.principal("acme", "alice")
