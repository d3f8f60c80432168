"""Authentication (the pedant auth-header matrix of original-server.md 5.1) and the group
authorization matrices, over HTTP against the real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pushd import chefauth
from tests.support.server import NORMAL_USER, PushdServer, running_server

CCPK = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"  # a syntactically valid Z85 Curve key


@pytest.fixture(scope="module")
def server() -> Iterator[PushdServer]:
    with running_server(nodes=("node1", "node2")) as srv:
        srv.add_org("elsewhere")
        srv.add_user("outsider-only")  # a member of pushdorg only, not of "elsewhere"
        yield srv


# -- the auth-header matrix ---------------------------------------------------------------

# (method, path relative to the org, body, query) for each endpoint the matrix covers
ENDPOINTS = {
    "config": ("GET", "config/node1", b"", {"ccpk": CCPK}),
    "jobs_get": ("GET", "jobs", b"", None),
    "jobs_post": ("POST", "jobs", json.dumps({"command": "x", "nodes": ["node2"]}).encode(), None),
    "node_states": ("GET", "node_states", b"", None),
}


def send(
    server: PushdServer,
    endpoint: str,
    mutate: Any = None,
    *,
    version: str = "1.3",
    timestamp: Any = None,
    sign_method: str | None = None,
    sign_path: str | None = None,
    sign_body: bytes | None = None,
    user: str | None = None,
) -> Any:
    method, path, body, query = ENDPOINTS[endpoint]
    full = server.path(path)
    name = user or server.admin_user
    key = chefauth.load_private_key_file(server.key_path(name))
    headers = chefauth.sign_request(
        sign_method or method,
        server.path(sign_path) if sign_path else full,
        body if sign_body is None else sign_body,
        name,
        key,
        version=version,
        timestamp=timestamp,
    )
    if mutate is not None:
        mutate(headers)
    return server.request(method, path, body, headers=headers, sign=False, query=query)


def drop(name: str) -> Any:
    return lambda headers: headers.pop(name)


def blank(name: str) -> Any:
    return lambda headers: headers.__setitem__(name, "")


def set_to(name: str, value: str) -> Any:
    return lambda headers: headers.__setitem__(name, value)


def drop_authorization(headers: dict[str, str]) -> None:
    for name in [n for n in headers if n.startswith("X-Ops-Authorization-")]:
        del headers[name]


def garble_authorization(headers: dict[str, str]) -> None:
    headers["X-Ops-Authorization-1"] = "Z" * len(headers["X-Ops-Authorization-1"])


def partial_authorization(headers: dict[str, str]) -> None:
    last = max(n for n in headers if n.startswith("X-Ops-Authorization-"))
    del headers[last]


MATRIX = [
    ("missing X-Ops-Sign", drop("X-Ops-Sign"), 400),
    ("empty X-Ops-Sign", blank("X-Ops-Sign"), 400),
    ("unsupported sign version", set_to("X-Ops-Sign", "algorithm=sha1;version=2.0"), 400),
    ("missing X-Ops-Timestamp", drop("X-Ops-Timestamp"), 400),
    ("empty X-Ops-Timestamp", blank("X-Ops-Timestamp"), 400),
    ("malformed X-Ops-Timestamp", set_to("X-Ops-Timestamp", "yesterday"), 401),
    ("missing X-Ops-Content-Hash", drop("X-Ops-Content-Hash"), 400),
    ("empty X-Ops-Content-Hash", blank("X-Ops-Content-Hash"), 400),
    ("malformed X-Ops-Content-Hash", set_to("X-Ops-Content-Hash", "garbage"), 401),
    ("mismatched X-Ops-Content-Hash", set_to("X-Ops-Content-Hash", "2jmj7l5rSw0yVb/vlWAYkK/YBwk="),
     401),
    ("missing X-Ops-UserId", drop("X-Ops-UserId"), 400),
    ("missing X-Ops-Authorization-N", drop_authorization, 401),
    ("garbled X-Ops-Authorization-1", garble_authorization, 401),
    ("partial X-Ops-Authorization-N", partial_authorization, 401),
]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize(("case", "mutate", "status"), MATRIX, ids=[m[0] for m in MATRIX])
def test_auth_header_matrix(
    server: PushdServer, endpoint: str, case: str, mutate: Any, status: int
) -> None:
    resp = send(server, endpoint, mutate)
    assert resp.status == status, (case, resp.body)
    body = resp.json()
    assert isinstance(body["error"], list) and len(body["error"]) == 1, body


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_signature_over_the_wrong_request_is_401(server: PushdServer, endpoint: str) -> None:
    method = ENDPOINTS[endpoint][0]
    other_method = "PUT" if method == "GET" else "GET"
    for kwargs in (
        {"sign_method": other_method},
        {"sign_path": "jobs/0123"},
        {"sign_body": b"something else"},
    ):
        resp = send(server, endpoint, **kwargs)
        assert resp.status == 401, (kwargs, resp.body)
        assert resp.json()["error"][0].startswith("Invalid signature for user or client")
        assert "X-Ops-Sign" in (resp.header("WWW-Authenticate") or "")


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("offset", [3600, -3600])
def test_timestamp_an_hour_off_is_401(server: PushdServer, endpoint: str, offset: int) -> None:
    when = datetime.now(UTC) + timedelta(seconds=offset)
    resp = send(server, endpoint, timestamp=when)
    assert resp.status == 401
    assert resp.json() == {
        "error": [
            f"Failed to authenticate as {server.admin_user}. Synchronize the clock on your host."
        ]
    }


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("version", ["1.0", "1.1", "1.3"])
def test_every_signing_version_with_a_30_s_old_timestamp(
    server: PushdServer, endpoint: str, version: str
) -> None:
    when = datetime.now(UTC) - timedelta(seconds=30)
    user = "node1" if endpoint == "config" else None  # only the node gets its config
    resp = send(server, endpoint, version=version, timestamp=when, user=user)
    # config needs the broker (200); POST creates a job (201)
    assert resp.status in (200, 201), resp.body


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_unknown_user_is_401(server: PushdServer, endpoint: str) -> None:
    server.users["nobody"] = server.key_path(NORMAL_USER)  # a key the server never heard of
    resp = send(server, endpoint, user="nobody")
    assert resp.status == 401
    assert resp.json() == {
        "error": [
            "Failed to authenticate as 'nobody'. Ensure that your node_name and client key "
            "are correct."
        ]
    }


def test_user_of_another_org_only_is_403(server: PushdServer) -> None:
    resp = server.request("GET", "/organizations/elsewhere/pushy/jobs", user="outsider-only")
    assert resp.status == 403
    assert resp.json() == {
        "error": ["'outsider-only' is not associated with organization 'elsewhere'"]
    }


def test_bogus_org_is_404(server: PushdServer) -> None:
    for path in ("jobs", "node_states", "config/node1", "job_status_feed"):
        resp = server.request("GET", f"/organizations/bogus/pushy/{path}", query={"ccpk": CCPK})
        assert resp.status == 404, path
        assert resp.json() == {"error": ["organization 'bogus' does not exist."]}


def test_status_needs_no_authentication(server: PushdServer) -> None:
    for path in ("/_status", "/pushy/_status"):
        resp = server.request("GET", path, sign=False)
        assert resp.status == 200
        doc = resp.json()
        assert doc["status"] == "it's alive"
        assert set(doc) == {"status", "incarnation_id", "node_fsm_count", "job_processes"}
        for method in ("PUT", "POST", "DELETE"):
            wrong = server.request(method, path, sign=False)
            assert wrong.status == 405 and "error" in wrong.json()


# -- authorization matrices ----------------------------------------------------------------

POST_BODY = {"command": "x", "nodes": ["node2"]}
DENIED = "User or client '{}' does not have access to that action on this server."


def outcome(server: PushdServer, user: str) -> dict[str, int]:
    return {
        "read": server.request("GET", "jobs", user=user).status,
        "states": server.request("GET", "node_states", user=user).status,
        "write": server.request("POST", "jobs", POST_BODY, user=user).status,
        "config": server.request("GET", "config/node1", user=user, query={"ccpk": CCPK}).status,
    }


@pytest.fixture
def groups(server: PushdServer) -> Iterator[PushdServer]:
    yield server
    server.remove_group("pushy_job_readers")
    server.remove_group("pushy_job_writers")
    server.remove_group("nested_ops")


def test_matrix_without_groups(groups: PushdServer) -> None:
    server = groups
    # users get no node's config (allow_user_node_config is off by default)
    assert outcome(server, server.admin_user) == {
        "read": 200, "states": 200, "write": 201, "config": 403
    }
    assert outcome(server, NORMAL_USER) == {
        "read": 200, "states": 200, "write": 403, "config": 403
    }
    assert outcome(server, "node1") == {"read": 200, "states": 200, "write": 403, "config": 200}
    other = server.request("GET", "config/node2", user="node1", query={"ccpk": CCPK})
    assert other.status == 403
    assert other.json() == {"error": ["Client and node name must match"]}
    denied = server.request("POST", "jobs", POST_BODY, user=NORMAL_USER)
    assert denied.json() == {"error": [DENIED.format(NORMAL_USER)]}


def test_matrix_with_readers_and_writers_groups(groups: PushdServer) -> None:
    server = groups
    server.add_group("pushy_job_readers", users=[NORMAL_USER], clients=["node1"])
    server.add_group("pushy_job_writers", users=[NORMAL_USER])
    assert outcome(server, NORMAL_USER) == {
        "read": 200, "states": 200, "write": 201, "config": 403
    }
    # the admin is in neither group: groups, once they exist, are the whole rule
    assert outcome(server, server.admin_user) == {
        "read": 403, "states": 403, "write": 403, "config": 403
    }
    # a client reads as a reader; its own config skips the group check (as the original)
    assert outcome(server, "node1") == {"read": 200, "states": 200, "write": 403, "config": 200}
    assert outcome(server, "node2")["read"] == 403
    assert outcome(server, "node2")["config"] == 403  # config/node1 is not node2's own


def test_matrix_with_nested_groups(groups: PushdServer) -> None:
    server = groups
    server.add_group("nested_ops", users=[NORMAL_USER])
    server.add_group("pushy_job_readers", groups=["nested_ops"])
    server.add_group("pushy_job_writers", groups=["nested_ops"])
    assert outcome(server, NORMAL_USER) == {
        "read": 200, "states": 200, "write": 201, "config": 403
    }
    assert outcome(server, server.admin_user)["read"] == 403


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_client_signing_with_a_bogus_key_is_401(server: PushdServer, endpoint: str) -> None:
    real = server.node_key_paths["node1"]
    server.node_key_paths["node1"] = server.key_path(NORMAL_USER)  # not node1's key
    try:
        resp = send(server, endpoint, user="node1")
    finally:
        server.node_key_paths["node1"] = real
    assert resp.status == 401
    assert resp.json() == {"error": ["Invalid signature for user or client 'node1'"]}
