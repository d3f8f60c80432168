"""What every principal source returns, and the interface it implements.

    Org(name, id)                       an organization; `id` is its 32-hex guid (jobs, node
                                        session keys and events are stored under it)
    Principal(name, kind, public_keys, org_member=True, admin=None, superuser=False,
              authz_id=None)
        `kind` is "user" or "client"; `public_keys` holds every PEM public key that may sign
        for the principal (Chef Server 12.x and later allow several); `org_member` is False for
        a user that exists but is not associated with the organization (the API answers 403);
        `admin` is the principal's own admin flag where the source knows one (Chef 11-style
        servers and the local store), None where admin rights come only from the `admins`
        group.
    Group(name, users, clients, groups) member names by kind; `groups` are nested group names.

    PrincipalSource (Protocol)
        org(name) -> Org | None
        principal(org_name, name) -> Principal | None
        group(org_name, group_name) -> Group | None
    Every method may raise `SourceUnavailable` when the backing service cannot answer
    (the API maps it to 502); "does not exist" is None, never an exception.

    SourceUnavailable(PushdError)       the principal store/upstream could not be consulted
    KIND_USER, KIND_CLIENT              the two principal kinds
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pushd.errors import PushdError

KIND_USER = "user"
KIND_CLIENT = "client"
PRINCIPAL_KINDS = (KIND_USER, KIND_CLIENT)


class SourceUnavailable(PushdError):
    """The principal source could not answer (upstream down, refused us, or answered garbage)."""


@dataclass(frozen=True)
class Org:
    name: str
    id: str


@dataclass(frozen=True)
class Principal:
    name: str
    kind: str
    public_keys: tuple[str, ...]
    org_member: bool = True
    admin: bool | None = None
    superuser: bool = False
    authz_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in PRINCIPAL_KINDS:
            raise ValueError(f"principal kind must be 'user' or 'client', not {self.kind!r}")
        # Accept any iterable of keys from callers but keep the value hashable and immutable.
        object.__setattr__(self, "public_keys", tuple(self.public_keys))

    @property
    def is_client(self) -> bool:
        return self.kind == KIND_CLIENT


@dataclass(frozen=True)
class Group:
    name: str
    users: frozenset[str] = field(default_factory=frozenset)
    clients: frozenset[str] = field(default_factory=frozenset)
    groups: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(
        cls,
        name: str,
        users: Iterable[str] = (),
        clients: Iterable[str] = (),
        groups: Iterable[str] = (),
    ) -> Group:
        return cls(name, frozenset(users), frozenset(clients), frozenset(groups))

    def has_member(self, kind: str, name: str) -> bool:
        """Direct membership of a principal of `kind` (nested groups are not followed)."""
        return name in (self.clients if kind == KIND_CLIENT else self.users)


@runtime_checkable
class PrincipalSource(Protocol):
    """Where organizations, principals and groups come from (local store or a Chef Server)."""

    def org(self, name: str) -> Org | None: ...

    def principal(self, org_name: str, name: str) -> Principal | None: ...

    def group(self, org_name: str, group_name: str) -> Group | None: ...
