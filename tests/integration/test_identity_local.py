"""The local principal source over the real store (SQLite and PostgreSQL) and the authz rules.

The pedant authorization matrices (no groups, reader/writer groups, nested groups) are run
against principals stored in the database, and a request signed by a stored client is
verified end to end with `pushd.chefauth`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pushd import chefauth, store
from pushd.identity import KIND_CLIENT, KIND_USER, SourceUnavailable, authz
from pushd.identity.authz import (
    CLIENT_NODE_MISMATCH,
    MAX_GROUPS_VISITED,
    forbidden_message,
    not_a_node,
    user_config_refused,
)
from pushd.identity.local import BULK_AFTER, LocalSource

KEYS = {name: rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for name in ("admin", "normal", "client", "other", "outside")}


def pem(name: str) -> str:
    return KEYS[name].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture
def org_id(db_backend: tuple[str, dict]) -> Iterator[str]:
    """The pedant fixture population: an org with admin/normal users and clients, and an
    outside user who belongs to another org only."""
    kind, params = db_backend
    store.open_database_params(kind, params, migrate=True)
    try:
        org = store.create_organization("pedant-org")
        elsewhere = store.create_organization("elsewhere")
        store.create_principal(org.id, "admin_user", KIND_USER, pem("admin"), admin=True)
        store.create_principal(org.id, "normal_user", KIND_USER, pem("normal"))
        store.create_principal(org.id, "admin_client", KIND_CLIENT, pem("client"), admin=True)
        store.create_principal(org.id, "normal_client", KIND_CLIENT, pem("other"))
        store.create_principal(elsewhere.id, "outside_user", KIND_USER, pem("outside"))
        store.create_principal(elsewhere.id, "stray_client", KIND_CLIENT, pem("other"))
        store.add_group_member(org.id, "admins", "user", "admin_user", create_group=True)
        store.add_group_member(org.id, "admins", "client", "admin_client")
        yield org.id
    finally:
        store.close_database()


def matrix(source: LocalSource) -> dict[str, tuple[bool, bool]]:
    org = source.org("pedant-org")
    assert org is not None
    result = {}
    for name in ("admin_user", "normal_user", "admin_client", "normal_client"):
        principal = source.principal("pedant-org", name)
        assert principal is not None
        result[name] = (authz.can_read(source, org, principal),
                        authz.can_write(source, org, principal))
    return result


def test_org_and_principals_come_from_the_store(org_id: str) -> None:
    source = LocalSource()
    org = source.org("pedant-org")
    assert org is not None and (org.name, org.id) == ("pedant-org", org_id)
    assert source.org("bogus-org") is None
    client = source.principal("pedant-org", "normal_client")
    assert client is not None
    assert (client.kind, client.org_member, client.admin) == ("client", True, False)
    assert client.public_keys == (pem("other"),)
    assert source.principal("pedant-org", "nobody") is None
    assert source.principal("bogus-org", "normal_user") is None


def test_outside_user_is_known_but_not_a_member_and_stray_client_is_unknown(org_id: str) -> None:
    source = LocalSource()
    outside = source.principal("pedant-org", "outside_user")
    assert outside is not None
    assert (outside.kind, outside.org_member, outside.public_keys) == (
        "user", False, (pem("outside"),)
    )
    assert source.principal("pedant-org", "stray_client") is None


def test_stored_client_signs_a_request_that_verifies(org_id: str) -> None:
    source = LocalSource()
    path = "/organizations/pedant-org/pushy/config/normal_client"
    headers = chefauth.sign_request("GET", path, b"", "normal_client", KEYS["other"])

    def lookup(user: str) -> tuple[str, ...] | None:
        principal = source.principal("pedant-org", user)
        return None if principal is None else principal.public_keys

    verified = chefauth.authenticate_request("GET", path, headers, b"", lookup)
    assert verified.user_id == "normal_client"


def test_client_wins_over_a_user_with_the_same_name(org_id: str) -> None:
    store.create_principal(org_id, "normal_client", KIND_USER, pem("normal"))
    principal = LocalSource().principal("pedant-org", "normal_client")
    assert principal is not None and principal.kind == "client"
    assert principal.public_keys == (pem("other"),)


def test_without_pushy_groups_everyone_reads_and_admins_write(org_id: str) -> None:
    assert matrix(LocalSource()) == {
        "admin_user": (True, True),
        "normal_user": (True, False),
        "admin_client": (True, True),
        "normal_client": (True, False),
    }


def test_reader_and_writer_groups_decide_when_they_exist(org_id: str) -> None:
    store.add_group_member(org_id, "pushy_job_readers", "user", "normal_user", create_group=True)
    store.add_group_member(org_id, "pushy_job_writers", "client", "normal_client",
                           create_group=True)
    assert matrix(LocalSource()) == {
        "admin_user": (False, False),  # admins no longer write once the writers group exists
        "normal_user": (True, False),
        "admin_client": (False, False),
        "normal_client": (False, True),
    }


def test_membership_through_nested_and_cyclic_groups(org_id: str) -> None:
    store.add_group_member(org_id, "pushy_job_readers", "group", "level1", create_group=True)
    store.add_group_member(org_id, "level1", "group", "level2", create_group=True)
    store.add_group_member(org_id, "level2", "user", "normal_user", create_group=True)
    store.add_group_member(org_id, "level2", "group", "pushy_job_readers")  # a cycle
    store.add_group_member(org_id, "level2", "group", "missing-group")  # dangling
    store.add_group_member(org_id, "pushy_job_writers", "group", "level2", create_group=True)
    assert matrix(LocalSource()) == {
        "admin_user": (False, False),
        "normal_user": (True, True),
        "admin_client": (False, False),
        "normal_client": (False, False),
    }


def test_a_deep_group_chain_is_bounded(org_id: str) -> None:
    chain = [f"g{i}" for i in range(MAX_GROUPS_VISITED + 5)]
    store.add_group_member(org_id, "pushy_job_readers", "group", chain[0], create_group=True)
    for parent, child in itertools.pairwise(chain):
        store.add_group_member(org_id, parent, "group", child, create_group=True)
    store.add_group_member(org_id, chain[-1], "user", "normal_user", create_group=True)
    source = LocalSource()
    normal = source.principal("pedant-org", "normal_user")
    assert authz.is_member(source, "pedant-org", normal, "pushy_job_readers") is False
    store.add_group_member(org_id, chain[3], "user", "normal_user")
    assert authz.is_member(source, "pedant-org", normal, "pushy_job_readers") is True


def test_config_rules_for_clients_and_users(org_id: str) -> None:
    source = LocalSource()
    org = source.org("pedant-org")
    client = source.principal("pedant-org", "normal_client")
    user = source.principal("pedant-org", "normal_user")
    assert authz.validate_client_node_name(client, "normal_client")
    assert not authz.validate_client_node_name(client, "DONKEY")
    assert authz.validate_client_node_name(user, "DONKEY")
    assert authz.can_read_config(source, org, client, "DONKEY") == CLIENT_NODE_MISMATCH
    assert authz.can_read_config(source, org, client, "DONKEY", validate_client_node_name=False
                                 ) == not_a_node("pedant-org", "DONKEY")  # fmt: skip
    assert authz.can_read_config(source, org, client, "admin_client",
                                 validate_client_node_name=False) is None  # fmt: skip
    # A user gets no node's session (with which it could act as that node)...
    assert authz.can_read_config(source, org, user, "admin_client") == user_config_refused(
        "normal_user")
    # ...unless allow_user_node_config, and then only for an existing client of the org.
    allowed = {"allow_user_node_config": True}
    assert authz.can_read_config(source, org, user, "admin_client", **allowed) is None
    for not_node in ("DONKEY", "admin_user", "stray_client"):
        assert authz.can_read_config(source, org, user, not_node, **allowed) == not_a_node(
            "pedant-org", not_node)
    store.add_group_member(org_id, "pushy_job_readers", "user", "admin_user", create_group=True)
    # Clients skip the group checks for their own config; users need the readers group.
    assert authz.can_read_config(source, org, client, "normal_client") is None
    assert authz.can_read_config(source, org, user, "admin_client", **allowed
                                 ) == forbidden_message("normal_user")  # fmt: skip


def test_changes_take_effect_on_the_next_lookup(org_id: str) -> None:
    source = LocalSource()
    assert source.principal("pedant-org", "normal_user") is not None
    store.delete_principal(org_id, "normal_user", KIND_USER)
    assert source.principal("pedant-org", "normal_user") is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_with_a_cache_ttl_changes_take_effect_within_the_ttl(org_id: str) -> None:
    clock = FakeClock()
    source = LocalSource(cache_ttl=5, clock=clock)
    org = source.org("pedant-org")
    client = source.principal("pedant-org", "normal_client")
    assert client is not None and client.public_keys == (pem("other"),)
    assert source.principal("pedant-org", "nobody") is None
    assert source.group("pedant-org", "admins") is not None
    # The operator replaces a key, deletes a client, adds the unknown name, drops a group...
    store.update_principal(org_id, "normal_client", KIND_CLIENT, public_key=pem("outside"))
    store.delete_principal(org_id, "normal_user", KIND_USER)
    store.create_principal(org_id, "nobody", KIND_CLIENT, pem("normal"))
    store.delete_group(org_id, "admins")
    clock.now += 4.9  # ...within the TTL the cached answers stand (no query made),
    assert source.principal("pedant-org", "normal_client") == client
    assert source.principal("pedant-org", "nobody") is None
    assert source.group("pedant-org", "admins") is not None
    clock.now += 0.2  # ...and after it every change shows.
    changed = source.principal("pedant-org", "normal_client")
    assert changed is not None and changed.public_keys == (pem("outside"),)
    assert source.principal("pedant-org", "normal_user") is None
    assert source.principal("pedant-org", "nobody") is not None
    assert source.group("pedant-org", "admins") is None
    # Lookups stay scoped by organization name: the same name elsewhere is another entry.
    assert source.principal("elsewhere", "normal_client") is None
    assert source.org("pedant-org") == org
    store.delete_organization(org_id)
    clock.now += 5.1
    assert source.org("pedant-org") is None
    assert source.principal("pedant-org", "normal_client") is None


def test_a_bumped_generation_drops_the_cache_before_the_next_lookup(
    org_id: str, tmp_path: Path
) -> None:
    from pushd.identity.generation import bump, generation_path

    clock = FakeClock()
    source = LocalSource(cache_ttl=300, clock=clock, generation_file=generation_path(tmp_path))
    assert source.group("pedant-org", "pushy_job_writers") is None
    assert source.principal("pedant-org", "normal_client") is not None
    store.add_group_member(org_id, "pushy_job_writers", "user", "normal_user", create_group=True)
    store.delete_principal(org_id, "normal_client", KIND_CLIENT)
    # Without a bump the cached answers stand for the whole TTL (the clock does not move)...
    assert source.group("pedant-org", "pushy_job_writers") is None
    bump(tmp_path)  # ...what push-jobs-server-ctl does after its change committed
    assert source.group("pedant-org", "pushy_job_writers") is not None
    assert source.principal("pedant-org", "normal_client") is None
    store.create_principal(org_id, "normal_client", KIND_CLIENT, pem("other"))
    assert source.principal("pedant-org", "normal_client") is None  # cached again
    bump(tmp_path)
    assert source.principal("pedant-org", "normal_client") is not None


def test_a_herd_of_lookups_is_answered_alike_from_one_bulk_load(org_id: str) -> None:
    # A restart storm: every node of the org asks at once. Past BULK_AFTER misses in one TTL
    # window the source loads the whole org; its answers must be those of single lookups.
    herd = [f"node{i}" for i in range(BULK_AFTER + 10)]
    for name in herd:
        store.create_principal(org_id, name, KIND_CLIENT, pem("client"))
    store.create_principal(org_id, "node3", KIND_USER, pem("normal"))  # the client wins
    clock = FakeClock()
    source = LocalSource(cache_ttl=5, clock=clock)
    names = [*herd, "admin_user", "normal_user", "admin_client", "outside_user", "nobody"]
    answers = {name: source.principal("pedant-org", name) for name in names}
    assert answers == {name: LocalSource().principal("pedant-org", name) for name in names}
    assert answers["node3"] is not None and answers["node3"].kind == "client"
    outside = answers["outside_user"]
    assert outside is not None and not outside.org_member
    # The bulk load cached the org's principals (no query within the TTL: a key replaced now
    # shows after it) but a client created since is found at once, not refused for a TTL.
    store.update_principal(org_id, "admin_client", KIND_CLIENT, public_key=pem("other"))
    store.create_principal(org_id, "late_node", KIND_CLIENT, pem("other"))
    clock.now += 1
    assert source.principal("pedant-org", "admin_client") == answers["admin_client"]
    late = source.principal("pedant-org", "late_node")
    assert late is not None and late.public_keys == (pem("other"),)
    clock.now += 5
    changed = source.principal("pedant-org", "admin_client")
    assert changed is not None and changed.public_keys == (pem("other"),)


def test_principals_of_a_bulk_load_are_cached_for_the_ttl(org_id: str) -> None:
    for i in range(BULK_AFTER + 1):
        store.create_principal(org_id, f"node{i}", KIND_CLIENT, pem("client"))
    clock = FakeClock()
    source = LocalSource(cache_ttl=5, clock=clock)
    for i in range(BULK_AFTER):  # the last of these misses loads the whole org
        assert source.principal("pedant-org", f"node{i}") is not None
    store.update_principal(org_id, f"node{BULK_AFTER}", KIND_CLIENT, public_key=pem("other"))
    cached = source.principal("pedant-org", f"node{BULK_AFTER}")
    assert cached is not None and cached.public_keys == (pem("client"),)
    clock.now += 5.1
    fresh = source.principal("pedant-org", f"node{BULK_AFTER}")
    assert fresh is not None and fresh.public_keys == (pem("other"),)


def test_without_a_cache_ttl_there_is_no_bulk_load(org_id: str) -> None:
    source = LocalSource()
    for i in range(BULK_AFTER + 2):
        store.create_principal(org_id, f"node{i}", KIND_CLIENT, pem("client"))
        assert source.principal("pedant-org", f"node{i}") is not None
    store.delete_principal(org_id, "node0", KIND_CLIENT)
    assert source.principal("pedant-org", "node0") is None


def test_store_failure_is_source_unavailable(db_backend: tuple[str, dict]) -> None:
    # A database without the schema (reconfigure never ran) makes every query fail.
    kind, params = db_backend
    store.open_database_params(kind, params)
    try:
        with pytest.raises(SourceUnavailable, match="local principal store"):
            LocalSource().org("pedant-org")
    finally:
        store.close_database()
