"""Authorization rules of the original server (original-server.md 5.1 and 3).

    can_read(source, org, principal) -> bool
        Every GET except `_status` (and the config endpoint for users): membership of
        `pushy_job_readers` when that group exists, otherwise any member of the organization.
    can_write(source, org, principal) -> bool
        POST /jobs: membership of `pushy_job_writers` when that group exists, otherwise of
        `admins`. A source without groups at all (a Chef 11-style server such as goiardi has no
        `admins` group) falls back to the principal's own `admin` flag.
    can_read_config(source, org, principal, node_name, *, validate_client_node_name=True,
                    allow_user_node_config=False) -> str | None
        The config endpoint, which hands out the node's session key and Curve admission: None
        when allowed, else the exact 403 message. A client may fetch its own node's config and
        skips group checks (as the original); another node's only when
        `validate_client_node_name` is off, and only if that node is an existing client. A user
        is refused (`user_config_refused`) unless `allow_user_node_config`, and then needs
        `can_read` and an existing client of that name (`not_a_node`): the original handed any
        reader the session of any name, with which a user could act as a node.
    validate_client_node_name(principal, node_name) -> bool
        True unless `principal` is a client asking for another node's config.
    is_member(source, org_name, principal, group_name) -> bool | None
        Membership by kind (users list for users, clients list for clients), following nested
        groups depth-first with cycle protection and a bound on groups visited; None when the
        top group does not exist. A nested group that does not exist is simply not a path in.
    forbidden_message(name) -> str, CLIENT_NODE_MISMATCH: the original's 403 texts.
    user_config_refused(name) -> str, not_a_node(org_name, node) -> str: pushd's own.

`source` may raise `SourceUnavailable`; it propagates (the API answers 502, where the original
answered 403 on an erchef error: a refusal would wrongly tell the user they lack rights).
"""

from __future__ import annotations

from pushd.identity.base import Org, Principal, PrincipalSource

READERS_GROUP = "pushy_job_readers"
WRITERS_GROUP = "pushy_job_writers"
ADMINS_GROUP = "admins"
CLIENT_NODE_MISMATCH = "Client and node name must match"
# Chef Server caps nesting far below this; the bound keeps a hostile or broken upstream from
# making one request fan out into thousands of group fetches.
MAX_GROUPS_VISITED = 64


def forbidden_message(name: str) -> str:
    return f"User or client '{name}' does not have access to that action on this server."


def is_member(
    source: PrincipalSource, org_name: str, principal: Principal, group_name: str
) -> bool | None:
    top = source.group(org_name, group_name)
    if top is None:
        return None
    seen = {group_name}
    pending = [top]
    while pending:
        group = pending.pop()
        if group.has_member(principal.kind, principal.name):
            return True
        for nested_name in sorted(group.groups):
            if nested_name in seen:
                continue  # a cycle or a diamond: each group is read once
            if len(seen) >= MAX_GROUPS_VISITED:
                return False
            seen.add(nested_name)
            nested = source.group(org_name, nested_name)
            if nested is not None:
                pending.append(nested)
    return False


def can_read(source: PrincipalSource, org: Org, principal: Principal) -> bool:
    if not principal.org_member:
        return False
    member = is_member(source, org.name, principal, READERS_GROUP)
    return True if member is None else member


def can_write(source: PrincipalSource, org: Org, principal: Principal) -> bool:
    if not principal.org_member:
        return False
    for group_name in (WRITERS_GROUP, ADMINS_GROUP):
        member = is_member(source, org.name, principal, group_name)
        if member is not None:
            return member
    return bool(principal.admin)


def user_config_refused(name: str) -> str:
    return (f"User '{name}' may not fetch a node's config: only the node's own client may "
            "(the server's allow_user_node_config setting is off).")


def not_a_node(org_name: str, node: str) -> str:
    return f"'{node}' is not a client of organization '{org_name}'."


def is_node(source: PrincipalSource, org: Org, node_name: str) -> bool:
    """An existing client of the organization by that name."""
    found = source.principal(org.name, node_name)
    return found is not None and found.is_client and found.org_member


def validate_client_node_name(principal: Principal, node_name: str) -> bool:
    return not principal.is_client or principal.name == node_name


def can_read_config(
    source: PrincipalSource,
    org: Org,
    principal: Principal,
    node_name: str,
    *,
    validate_client_node_name: bool = True,
    allow_user_node_config: bool = False,
) -> str | None:
    if principal.is_client:
        if principal.name == node_name:
            return None  # the original lets clients skip the group checks here
        if validate_client_node_name:
            return CLIENT_NODE_MISMATCH
        return None if is_node(source, org, node_name) else not_a_node(org.name, node_name)
    if not allow_user_node_config:
        return user_config_refused(principal.name)
    if not can_read(source, org, principal):
        return forbidden_message(principal.name)
    return None if is_node(source, org, node_name) else not_a_node(org.name, node_name)
