"""The local principal store (organizations, users, clients, groups), on both backends."""

from __future__ import annotations

import pytest

from pushd import store

PEM = "-----BEGIN PUBLIC KEY-----\nMIIB...\n-----END PUBLIC KEY-----\n"


def test_organizations_are_created_found_listed_and_deleted(store_db: str) -> None:
    acme = store.create_organization("acme", "Acme Inc.")
    assert len(acme.id) == 32 and int(acme.id, 16) >= 0
    globex = store.create_organization("globex", org_id="0123456789abcdef0123456789abcdef")
    assert globex.id == "0123456789abcdef0123456789abcdef"

    assert store.get_organization("acme") == acme
    assert store.get_organization_by_id(acme.id) == acme
    assert store.get_organization("nope") is None
    assert [org.name for org in store.list_organizations()] == ["acme", "globex"]

    with pytest.raises(store.ConflictError, match="acme"):
        store.create_organization("acme")

    store.create_principal(acme.id, "alice", "user", PEM)
    store.create_group(acme.id, "admins")
    assert store.delete_organization(acme.id) is True
    assert store.get_organization("acme") is None
    assert store.list_principals(acme.id) == []
    assert store.list_groups(acme.id) == []
    assert store.delete_organization(acme.id) is False


@pytest.mark.parametrize(
    ("name", "org_id"),
    [("", None), ("x" * 256, None), ("bad\nname", None), ("ok", "NOT-HEX"), ("ok", "a" * 31)],
)
def test_bad_organization_values_are_refused(store_db: str, name: str, org_id: str | None) -> None:
    with pytest.raises(store.InvalidValue):
        store.create_organization(name, org_id=org_id)
    assert store.list_organizations() == []


def test_users_and_clients_with_keys(store_db: str) -> None:
    org = store.create_organization("acme")
    alice = store.create_principal(org.id, "alice", "user", PEM, admin=True)
    assert alice.admin is True and alice.kind == "user" and alice.public_key == PEM
    store.create_principal(org.id, "web1", "client", PEM)
    # A user and a client may share a name; each is its own principal.
    store.create_principal(org.id, "web1", "user", PEM + "#user")

    assert store.get_principal(org.id, "alice", "user") == alice
    assert store.get_principal(org.id, "alice", "client") is None
    assert [(p.name, p.kind) for p in store.find_principals(org.id, "web1")] == [
        ("web1", "client"),
        ("web1", "user"),
    ]
    assert [p.name for p in store.list_principals(org.id, "client")] == ["web1"]
    assert [(p.kind, p.name) for p in store.list_principals(org.id)] == [
        ("client", "web1"),
        ("user", "alice"),
        ("user", "web1"),
    ]

    with pytest.raises(store.ConflictError):
        store.create_principal(org.id, "alice", "user", PEM)

    assert store.update_principal(org.id, "alice", "user", public_key="NEW", admin=False)
    updated = store.get_principal(org.id, "alice", "user")
    assert updated is not None and (updated.public_key, updated.admin) == ("NEW", False)
    assert store.update_principal(org.id, "ghost", "user", admin=True) is False

    assert store.delete_principal(org.id, "web1", "client") is True
    assert store.get_principal(org.id, "web1", "client") is None
    assert store.get_principal(org.id, "web1", "user") is not None
    assert store.delete_principal(org.id, "web1", "client") is False


def test_bad_principal_values_are_refused(store_db: str) -> None:
    org = store.create_organization("acme")
    with pytest.raises(store.InvalidValue):
        store.create_principal(org.id, "alice", "robot", PEM)
    with pytest.raises(store.InvalidValue):
        store.create_principal(org.id, "alice", "user", "")
    with pytest.raises(store.InvalidValue):
        store.create_principal(org.id, "alice", "user", "x" * 20_000)
    with pytest.raises(store.InvalidValue):
        store.create_principal(org.id, "al\x00ice", "user", PEM)
    with pytest.raises(store.StoreError):
        store.create_principal("f" * 32, "alice", "user", PEM)  # no such org
    assert store.list_principals(org.id) == []


def test_groups_and_nested_memberships(store_db: str) -> None:
    org = store.create_organization("acme")
    store.create_group(org.id, "admins")
    store.create_group(org.id, "admins", exist_ok=True)
    with pytest.raises(store.ConflictError):
        store.create_group(org.id, "admins")

    assert store.add_group_member(org.id, "admins", "user", "alice") is True
    assert store.add_group_member(org.id, "admins", "user", "alice") is False
    assert store.add_group_member(org.id, "admins", "group", "ops") is True
    with pytest.raises(store.StoreError, match="no group"):
        store.add_group_member(org.id, "ops", "client", "web1")
    assert store.add_group_member(org.id, "ops", "client", "web1", create_group=True) is True
    assert store.add_group_member(org.id, "ops", "user", "bob") is True
    with pytest.raises(store.InvalidValue):
        store.add_group_member(org.id, "ops", "robot", "r2d2")

    admins = store.get_group(org.id, "admins")
    assert admins == store.Group(org.id, "admins", ("alice",), (), ("ops",))
    assert store.get_group(org.id, "ops") == store.Group(org.id, "ops", ("bob",), ("web1",), ())
    assert store.list_groups(org.id) == ["admins", "ops"]
    assert store.get_group(org.id, "missing") is None

    assert store.remove_group_member(org.id, "ops", "user", "bob") is True
    assert store.remove_group_member(org.id, "ops", "user", "bob") is False
    assert store.remove_group_member(org.id, "missing", "user", "bob") is False

    # Deleting a group removes it from the groups it belonged to.
    assert store.delete_group(org.id, "ops") is True
    admins = store.get_group(org.id, "admins")
    assert admins is not None and admins.groups == ()
    assert store.delete_group(org.id, "ops") is False


def test_deleting_a_principal_removes_its_memberships(store_db: str) -> None:
    org = store.create_organization("acme")
    store.create_principal(org.id, "web1", "client", PEM)
    store.create_principal(org.id, "web1", "user", PEM)
    store.add_group_member(org.id, "pushy_job_readers", "client", "web1", create_group=True)
    store.add_group_member(org.id, "pushy_job_readers", "user", "web1")
    store.delete_principal(org.id, "web1", "client")
    group = store.get_group(org.id, "pushy_job_readers")
    assert group is not None and group.clients == () and group.users == ("web1",)


def test_principals_and_groups_are_scoped_by_organization(store_db: str) -> None:
    acme = store.create_organization("acme")
    globex = store.create_organization("globex")
    store.create_principal(acme.id, "alice", "user", PEM, admin=True)
    store.add_group_member(acme.id, "admins", "user", "alice", create_group=True)
    store.add_group_member(globex.id, "admins", "user", "alice", create_group=True)

    assert store.get_principal(globex.id, "alice", "user") is None
    assert store.find_principals(globex.id, "alice") == []
    assert store.list_principals(globex.id) == []
    assert store.update_principal(globex.id, "alice", "user", admin=False) is False

    # Deleting acme's alice leaves globex's membership named alice alone.
    store.delete_principal(acme.id, "alice", "user")
    globex_admins = store.get_group(globex.id, "admins")
    assert globex_admins is not None and globex_admins.users == ("alice",)
    assert store.delete_group(globex.id, "admins") is True
    acme_admins = store.get_group(acme.id, "admins")
    assert acme_admins is not None and acme_admins.users == ()
