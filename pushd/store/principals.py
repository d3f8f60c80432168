"""The local principal store: organizations, users and clients with public keys, groups.

Names: 1..255 characters, no control characters (the ctl applies Chef's stricter rules).
A principal is identified by (org, name, kind); a user and a client may share a name.
Group members are referenced by (kind, name) and need not exist (Chef allows dangling members;
`delete_principal` / `delete_group` remove their memberships in that org).

    Organization(id, name, full_name, created_at)          id: 32 lowercase hex (a guid)
    Principal(org_id, name, kind, public_key, admin, created_at)   kind "user" | "client"
    Group(org_id, name, users, clients, groups)            member names as sorted tuples

    create_organization(name, full_name=None, *, org_id=None) -> Organization
        ConflictError if the name is taken
    get_organization(name) -> Organization | None
    get_organization_by_id(org_id) -> Organization | None
    list_organizations() -> list[Organization]             by name
    delete_organization(org_id) -> bool                    principals and groups go with it

    create_principal(org_id, name, kind, public_key, *, admin=False) -> Principal
    get_principal(org_id, name, kind) -> Principal | None
    find_principals(org_id, name) -> list[Principal]       every kind with that name
    list_principals(org_id, kind=None) -> list[Principal]  by kind, name
    update_principal(org_id, name, kind, *, public_key=None, admin=None) -> bool
    delete_principal(org_id, name, kind) -> bool

    create_group(org_id, name, *, exist_ok=False) -> None
    get_group(org_id, name) -> Group | None
    list_groups(org_id) -> list[str]
    delete_group(org_id, name) -> bool
    add_group_member(org_id, group, member_kind, member_name, *, create_group=False) -> bool
        False when already a member; member_kind "user" | "client" | "group"
    remove_group_member(org_id, group, member_kind, member_name) -> bool
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import peewee

from pushd.store.db import (
    ConflictError,
    InvalidValue,
    StoreError,
    store_function,
    transaction,
)
from pushd.store.models import GroupMember, GroupRow, OrganizationRow, PrincipalRow
from pushd.store.times import utcnow

PRINCIPAL_KINDS = ("user", "client")
MEMBER_KINDS = ("user", "client", "group")
MAX_NAME = 255
MAX_PUBLIC_KEY = 16_384


@dataclass(frozen=True)
class Organization:
    id: str
    name: str
    full_name: str | None
    created_at: datetime


@dataclass(frozen=True)
class Principal:
    org_id: str
    name: str
    kind: str
    public_key: str
    admin: bool
    created_at: datetime


@dataclass(frozen=True)
class Group:
    org_id: str
    name: str
    users: tuple[str, ...]
    clients: tuple[str, ...]
    groups: tuple[str, ...]


def _check_name(what: str, name: str) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise InvalidValue(f"{what} name must be 1..{MAX_NAME} characters: {name!r:.80}")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise InvalidValue(f"{what} name contains control characters: {name!r:.80}")
    return name


def _check_kind(kind: str, allowed: tuple[str, ...]) -> str:
    if kind not in allowed:
        raise InvalidValue(f"kind must be one of {', '.join(allowed)}, not {kind!r:.40}")
    return kind


def _check_key(public_key: str) -> str:
    if not isinstance(public_key, str) or not 0 < len(public_key) <= MAX_PUBLIC_KEY:
        raise InvalidValue(f"public key must be 1..{MAX_PUBLIC_KEY} characters of PEM text")
    if "\x00" in public_key:
        raise InvalidValue("public key contains a NUL character")
    return public_key


def _org_view(row: OrganizationRow) -> Organization:
    return Organization(
        id=row.id, name=row.name, full_name=row.full_name, created_at=row.created_at
    )


def _principal_view(row: PrincipalRow) -> Principal:
    return Principal(
        org_id=row.org_id,
        name=row.name,
        kind=row.kind,
        public_key=row.public_key,
        admin=bool(row.admin),
        created_at=row.created_at,
    )


# --------------------------------------------------------------------------------------------
# Organizations


@store_function
def create_organization(
    name: str, full_name: str | None = None, *, org_id: str | None = None
) -> Organization:
    """Create an organization with a fresh guid (or `org_id`); ConflictError if name taken."""
    _check_name("organization", name)
    guid = org_id or uuid.uuid4().hex
    if len(guid) != 32 or any(char not in "0123456789abcdef" for char in guid):
        raise InvalidValue(f"organization id must be 32 lowercase hex digits: {guid!r:.40}")
    now = utcnow()
    try:
        with transaction():
            OrganizationRow.insert(
                id=guid, name=name, full_name=full_name, created_at=now
            ).execute()
    except peewee.IntegrityError as exc:
        raise ConflictError(f"organization {name!r} already exists") from exc
    return Organization(id=guid, name=name, full_name=full_name, created_at=now)


@store_function
def get_organization(name: str) -> Organization | None:
    row = OrganizationRow.select().where(OrganizationRow.name == name).first()
    return None if row is None else _org_view(row)


@store_function
def get_organization_by_id(org_id: str) -> Organization | None:
    row = OrganizationRow.select().where(OrganizationRow.id == org_id).first()
    return None if row is None else _org_view(row)


@store_function
def list_organizations() -> list[Organization]:
    return [_org_view(row) for row in OrganizationRow.select().order_by(OrganizationRow.name)]


@store_function
def delete_organization(org_id: str) -> bool:
    """Delete the organization with its principals and groups (jobs are kept)."""
    with transaction():
        return OrganizationRow.delete().where(OrganizationRow.id == org_id).execute() > 0


# --------------------------------------------------------------------------------------------
# Users and clients


@store_function
def create_principal(
    org_id: str, name: str, kind: str, public_key: str, *, admin: bool = False
) -> Principal:
    """Add a user or client with its public key (PEM); ConflictError if it exists already."""
    _check_name(kind, name)
    _check_kind(kind, PRINCIPAL_KINDS)
    _check_key(public_key)
    now = utcnow()
    try:
        with transaction():
            if get_organization_by_id(org_id) is None:
                raise StoreError(f"no organization with id {org_id}")
            PrincipalRow.insert(
                org_id=org_id,
                name=name,
                kind=kind,
                public_key=public_key,
                admin=bool(admin),
                created_at=now,
            ).execute()
    except peewee.IntegrityError as exc:
        raise ConflictError(f"{kind} {name!r} already exists in this organization") from exc
    return Principal(org_id, name, kind, public_key, bool(admin), now)


@store_function
def get_principal(org_id: str, name: str, kind: str) -> Principal | None:
    row = (
        PrincipalRow.select()
        .where(
            (PrincipalRow.org_id == org_id)
            & (PrincipalRow.name == name)
            & (PrincipalRow.kind == kind)
        )
        .first()
    )
    return None if row is None else _principal_view(row)


@store_function
def find_principals(org_id: str, name: str) -> list[Principal]:
    """Every principal of the org with this name (a user and a client may share one)."""
    rows = (
        PrincipalRow.select()
        .where((PrincipalRow.org_id == org_id) & (PrincipalRow.name == name))
        .order_by(PrincipalRow.kind)
    )
    return [_principal_view(row) for row in rows]


@store_function
def list_principals(org_id: str, kind: str | None = None) -> list[Principal]:
    query = PrincipalRow.select().where(PrincipalRow.org_id == org_id)
    if kind is not None:
        query = query.where(PrincipalRow.kind == _check_kind(kind, PRINCIPAL_KINDS))
    return [_principal_view(row) for row in query.order_by(PrincipalRow.kind, PrincipalRow.name)]


@store_function
def update_principal(
    org_id: str,
    name: str,
    kind: str,
    *,
    public_key: str | None = None,
    admin: bool | None = None,
) -> bool:
    """Replace the key and/or admin flag; False when there is no such principal."""
    changes: dict[peewee.Field, object] = {}
    if public_key is not None:
        changes[PrincipalRow.public_key] = _check_key(public_key)
    if admin is not None:
        changes[PrincipalRow.admin] = bool(admin)
    if not changes:
        return get_principal(org_id, name, kind) is not None
    with transaction():
        return (
            PrincipalRow.update(changes)
            .where(
                (PrincipalRow.org_id == org_id)
                & (PrincipalRow.name == name)
                & (PrincipalRow.kind == kind)
            )
            .execute()
            > 0
        )


def _org_group_ids(org_id: str) -> peewee.ModelSelect[GroupRow]:
    return GroupRow.select(GroupRow.id).where(GroupRow.org_id == org_id)


@store_function
def delete_principal(org_id: str, name: str, kind: str) -> bool:
    """Delete a user or client and its group memberships in the org."""
    with transaction():
        GroupMember.delete().where(
            GroupMember.group_id.in_(_org_group_ids(org_id))
            & (GroupMember.member_kind == kind)
            & (GroupMember.member_name == name)
        ).execute()
        return (
            PrincipalRow.delete()
            .where(
                (PrincipalRow.org_id == org_id)
                & (PrincipalRow.name == name)
                & (PrincipalRow.kind == kind)
            )
            .execute()
            > 0
        )


# --------------------------------------------------------------------------------------------
# Groups


def _group_row(org_id: str, name: str) -> GroupRow | None:
    return GroupRow.select().where((GroupRow.org_id == org_id) & (GroupRow.name == name)).first()


def _create_group_row(org_id: str, name: str, *, exist_ok: bool) -> GroupRow:
    _check_name("group", name)
    row = _group_row(org_id, name)
    if row is not None:
        if exist_ok:
            return row
        raise ConflictError(f"group {name!r} already exists in this organization")
    if get_organization_by_id(org_id) is None:
        raise StoreError(f"no organization with id {org_id}")
    GroupRow.insert(org_id=org_id, name=name, created_at=utcnow()).execute()
    row = _group_row(org_id, name)
    assert row is not None
    return row


@store_function
def create_group(org_id: str, name: str, *, exist_ok: bool = False) -> None:
    """Create an empty group; ConflictError if it exists (unless exist_ok)."""
    with transaction():
        _create_group_row(org_id, name, exist_ok=exist_ok)


@store_function
def get_group(org_id: str, name: str) -> Group | None:
    row = _group_row(org_id, name)
    if row is None:
        return None
    members: dict[str, list[str]] = {kind: [] for kind in MEMBER_KINDS}
    for member in GroupMember.select().where(GroupMember.group_id == row.id):
        members[member.member_kind].append(member.member_name)
    return Group(
        org_id=org_id,
        name=name,
        users=tuple(sorted(members["user"])),
        clients=tuple(sorted(members["client"])),
        groups=tuple(sorted(members["group"])),
    )


@store_function
def list_groups(org_id: str) -> list[str]:
    query = GroupRow.select(GroupRow.name).where(GroupRow.org_id == org_id)
    return [row.name for row in query.order_by(GroupRow.name)]


@store_function
def delete_group(org_id: str, name: str) -> bool:
    """Delete the group (its member list goes with it) and its membership in other groups."""
    with transaction():
        GroupMember.delete().where(
            GroupMember.group_id.in_(_org_group_ids(org_id))
            & (GroupMember.member_kind == "group")
            & (GroupMember.member_name == name)
        ).execute()
        return (
            GroupRow.delete()
            .where((GroupRow.org_id == org_id) & (GroupRow.name == name))
            .execute()
            > 0
        )


@store_function
def add_group_member(
    org_id: str,
    group: str,
    member_kind: str,
    member_name: str,
    *,
    create_group: bool = False,
) -> bool:
    """Add a member; False if it already was one. StoreError if the group is missing."""
    _check_kind(member_kind, MEMBER_KINDS)
    _check_name(member_kind, member_name)
    with transaction():
        row = _group_row(org_id, group)
        if row is None:
            if not create_group:
                raise StoreError(f"no group {group!r} in this organization")
            row = _create_group_row(org_id, group, exist_ok=True)
        member = (
            (GroupMember.group_id == row.id)
            & (GroupMember.member_kind == member_kind)
            & (GroupMember.member_name == member_name)
        )
        if GroupMember.select().where(member).exists():
            return False
        GroupMember.insert(
            group_id=row.id, member_kind=member_kind, member_name=member_name
        ).on_conflict_ignore().execute()
        return True


@store_function
def remove_group_member(org_id: str, group: str, member_kind: str, member_name: str) -> bool:
    with transaction():
        row = _group_row(org_id, group)
        if row is None:
            return False
        return (
            GroupMember.delete()
            .where(
                (GroupMember.group_id == row.id)
                & (GroupMember.member_kind == member_kind)
                & (GroupMember.member_name == member_name)
            )
            .execute()
            > 0
        )
