"""The chef_server principal source against a real goiardi (a Chef 11-API server, single-tenant).

goiardi has no organizations, groups or org guids: the source must detect that, synthesize a
stable guid per organization name, read /principals/NAME and fall back to admin flags.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from pushd import chefauth
from pushd.errors import AuthError
from pushd.identity import ChefServerSource, ChefServerUnavailable, authz
from tests.support.goiardi import GoiardiServer, running_goiardi
from tests.support.ports import free_port


class Clock:
    """A settable monotonic clock, so cache expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def goiardi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoiardiServer]:
    with running_goiardi(tmp_path_factory.mktemp("goiardi")) as server:
        yield server


@pytest.fixture(scope="module")
def keys(goiardi: GoiardiServer) -> dict[str, str]:
    """Private keys of principals created once for the module."""
    return {
        "node1": goiardi.create_client("node1"),
        "robot": goiardi.create_client("robot", admin=True),
        "bob": goiardi.create_user("bob"),
    }


def make_source(server: GoiardiServer, **kwargs: object) -> ChefServerSource:
    return ChefServerSource(server.url, server.admin_name, server.admin_key, **kwargs)


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.3"])
def test_goiardi_accepts_requests_signed_by_chefauth(goiardi: GoiardiServer, version: str) -> None:
    headers = chefauth.sign_request("GET", "/users/admin", b"", "admin", goiardi.admin_key,
                                    version=version)
    request = urllib.request.Request(goiardi.url + "/users/admin", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_single_tenant_server_is_detected_and_orgs_get_stable_guids(
    goiardi: GoiardiServer,
) -> None:
    source = make_source(goiardi)
    assert source.tenancy == "auto"
    org = source.org("acme")
    assert source.tenancy == "single"
    assert org is not None and org.name == "acme"
    assert len(org.id) == 32 and int(org.id, 16) >= 0
    assert make_source(goiardi).org("acme") == org  # another worker computes the same guid
    assert source.org("other").id != org.id


def test_client_and_user_principals_carry_kind_key_and_admin_flag(
    goiardi: GoiardiServer, keys: dict[str, str]
) -> None:
    source = make_source(goiardi)
    node = source.principal("acme", "node1")
    assert node is not None
    assert (node.kind, node.org_member, node.admin) == ("client", True, False)
    robot = source.principal("acme", "robot")
    assert robot is not None and (robot.kind, robot.admin) == ("client", True)
    bob = source.principal("acme", "bob")
    assert bob is not None and (bob.kind, bob.admin) == ("user", False)
    admin = source.principal("acme", "admin")
    assert admin is not None and (admin.kind, admin.admin) == ("user", True)
    assert source.principal("acme", "nobody") is None


def test_a_request_signed_by_a_goiardi_client_verifies_with_the_fetched_key(
    goiardi: GoiardiServer, keys: dict[str, str]
) -> None:
    source = make_source(goiardi)
    path = "/organizations/acme/pushy/config/node1"
    headers = chefauth.sign_request("GET", path, b"", "node1", keys["node1"])

    def lookup(user: str) -> tuple[str, ...] | None:
        principal = source.principal("acme", user)
        return None if principal is None else principal.public_keys

    assert chefauth.verify_request("GET", path, headers, b"", lookup) == "node1"
    forged = chefauth.sign_request("GET", path, b"", "node1", keys["bob"])
    with pytest.raises(AuthError) as caught:
        chefauth.verify_request("GET", path, forged, b"", lookup)
    assert caught.value.status == 401


def test_without_groups_writes_need_the_admin_flag_and_everyone_reads(
    goiardi: GoiardiServer, keys: dict[str, str]
) -> None:
    source = make_source(goiardi)
    org = source.org("acme")
    assert org is not None
    assert source.group("acme", "admins") is None
    allowed = {
        name: (authz.can_read(source, org, p), authz.can_write(source, org, p))
        for name in ("admin", "robot", "bob", "node1")
        if (p := source.principal("acme", name)) is not None
    }
    assert allowed == {
        "admin": (True, True),
        "robot": (True, True),
        "bob": (True, False),
        "node1": (True, False),
    }


def test_names_that_cannot_be_chef_names_are_unknown_without_a_request(
    goiardi: GoiardiServer,
) -> None:
    source = make_source(goiardi)
    for name in ("../users/admin", "a/b", "", "x" * 300, "..", "bob?x=1"):
        assert source.principal("acme", name) is None
    assert source.org("../../users") is None


def test_cached_answers_expire_after_the_ttl(goiardi: GoiardiServer) -> None:
    clock = Clock()
    source = make_source(goiardi, cache_ttl=5, clock=clock)
    goiardi.create_client("ephemeral")
    assert source.principal("acme", "ephemeral") is not None
    status, _ = goiardi.request("DELETE", "/clients/ephemeral")
    assert status == 200
    clock.now += 4
    assert source.principal("acme", "ephemeral") is not None  # still cached
    clock.now += 2
    assert source.principal("acme", "ephemeral") is None  # refetched after the TTL


def test_wrong_superuser_key_is_an_unavailable_upstream(
    goiardi: GoiardiServer, keys: dict[str, str]
) -> None:
    source = ChefServerSource(goiardi.url, "admin", keys["bob"], tenancy="single")
    with pytest.raises(ChefServerUnavailable, match="refused superuser 'admin'"):
        source.principal("acme", "node1")


def test_unreachable_server_is_an_unavailable_upstream() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    source = ChefServerSource(f"http://127.0.0.1:{free_port()}", "admin", key, timeout=2)
    with pytest.raises(ChefServerUnavailable, match=r"127\.0\.0\.1"):
        source.org("acme")
    # Nothing was cached: the next call tries again (and fails again).
    with pytest.raises(ChefServerUnavailable):
        source.org("acme")
