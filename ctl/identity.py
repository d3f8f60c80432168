"""Shared parts of the identity commands (org-*, user-*, client-*, group-*): the local store.

    open_store(ctx, changes=False) -> contextmanager yielding the pushd.store module
        Makes sure the directories and schema exist (what reconfigure does; idempotent), opens
        the database the settings name and closes it afterwards; as root, the files stay the
        service account's. Store errors become CommandFailed. With `changes` (every command
        that changes organizations, principals, keys or groups) it then bumps the identity
        generation (`pushd.identity.generation`) and, on PostgreSQL, notifies the cluster
        (`store.cluster.notify(IDENTITY_CHANNEL)`: every member's broker bumps its own), also
        when the command failed part way: every API worker of every server drops its cached
        identity answers before its next lookup, so the change applies to the first request
        after the command returns (on other members: once their broker got the notification).
    check_name(kind, name) -> str             Chef's naming rules; CommandFailed (exit 2)
    require_org(store, name) -> Organization  CommandFailed when missing
    KeyMaterial(public_pem, private_pem | None)
    key_material(public_key_file, key_out) -> KeyMaterial
        --public-key FILE: read and check an RSA public key (PEM); --key-out FILE: generate a
        2048-bit pair (the private key is written only after the store accepted the principal,
        by write_private_key). Exactly one of the two must be given.
    write_private_key(path, pem) -> None      0600, refuses to overwrite
    add_key_arguments(parser, help)           --public-key FILE | --key-out FILE (one required)
    replace_key(ctx, kind, name, args) -> int the user-key / client-key commands: a new key for
        an existing principal (the private key written only once the store took the public one)
    tell_broker_key_deleted(ctx, org_id, node) a running broker stops using the node's session
        key now (it answers config fetches from memory); a broker that is not running reads
        the store when it starts, so its absence is not an error
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushd_ctl import layout, provision
from pushd_ctl.context import EXIT_OK, EXIT_USAGE, CommandFailed, Context

from pushd.errors import ConfigError, StoreError

__all__ = [
    "KeyMaterial",
    "add_key_arguments",
    "check_name",
    "key_material",
    "open_store",
    "replace_key",
    "require_org",
    "tell_broker_key_deleted",
    "write_private_key",
]

MAX_KEY_FILE = 16 * 1024
# Chef Server's rules: organizations, users and groups are lowercase; client (node) names also
# allow upper case, dots and colons (node names are often FQDNs).
_NAME_RULES = {
    "organization": re.compile(r"[a-z0-9][a-z0-9_-]{0,254}"),
    "user": re.compile(r"[a-z0-9_-]{1,255}"),
    "group": re.compile(r"[a-z0-9_-]{1,255}"),
    "client": re.compile(r"[A-Za-z0-9_.:-]{1,255}"),
}


def check_name(kind: str, name: str) -> str:
    if not _NAME_RULES[kind].fullmatch(name):
        allowed = "a-z, 0-9, _ and -" if kind != "client" else "A-Z, a-z, 0-9, _, ., : and -"
        raise CommandFailed(
            f"invalid {kind} name {name!r}: use 1 to 255 characters of {allowed}", EXIT_USAGE
        )
    return name


@contextlib.contextmanager
def open_store(ctx: Context, *, changes: bool = False) -> Iterator[Any]:
    from pushd import store

    settings = ctx.settings
    provision.ensure_directories(settings)
    provision.ensure_database(settings)
    try:
        store.open_database(settings)
    except StoreError as err:
        raise CommandFailed(f"database: {err}") from None
    try:
        yield store
    except StoreError as err:
        raise CommandFailed(str(err)) from None
    finally:
        try:
            if changes:
                _announce_change(ctx, store)  # every change is committed by now
        finally:
            store.close_database()
        provision.hand_over(settings, layout.service_user())


def _announce_change(ctx: Context, store: Any) -> None:
    """Every API worker drops its cached identity answers before its next lookup: this host's
    through the generation file, on PostgreSQL every cluster member's through a notification
    (each member's broker LISTENs and bumps its own run_dir's file)."""
    from pushd.identity.generation import bump, generation_path

    ttl = ctx.settings.get("principal_cache_ttl")
    try:
        bump(ctx.settings.get("run_dir"))
    except OSError as err:
        ctx.warn(f"warning: cannot write {generation_path(ctx.settings.get('run_dir'))} "
                 f"({err.strerror}); running API workers see the change within "
                 f"principal_cache_ttl ({ttl} s)")
    if store.dialect() != "postgres":
        return
    try:
        store.cluster.notify(store.cluster.IDENTITY_CHANNEL)
    except StoreError as err:
        ctx.warn(f"warning: cannot notify the cluster ({err}); the other servers' API workers "
                 f"see the change within principal_cache_ttl ({ttl} s)")


def require_org(store: Any, name: str) -> Any:
    org = store.get_organization(name)
    if org is None:
        raise CommandFailed(f"organization {name!r} does not exist (org-list shows them)")
    return org


@dataclass(frozen=True)
class KeyMaterial:
    public_pem: str
    private_pem: str | None


def key_material(public_key_file: str | None, key_out: str | None) -> KeyMaterial:
    from pushd.keys import generate_client_keypair, load_rsa_public_key

    if bool(public_key_file) == bool(key_out):
        raise CommandFailed("give exactly one of --public-key FILE or --key-out FILE", EXIT_USAGE)
    if public_key_file:
        path = Path(public_key_file)
        try:
            if path.stat().st_size > MAX_KEY_FILE:
                raise CommandFailed(f"{path}: larger than {MAX_KEY_FILE} bytes; not a public key")
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise CommandFailed(f"{path}: cannot read: {err}") from None
        try:
            load_rsa_public_key(text, source=str(path))
        except ConfigError as err:
            raise CommandFailed(str(err)) from None
        return KeyMaterial(text, None)
    out = Path(str(key_out))
    if out.exists():
        raise CommandFailed(f"{out} exists; not overwriting a key")
    if not out.parent.is_dir():
        raise CommandFailed(f"{out.parent}: no such directory")
    private_pem, public_pem = generate_client_keypair()
    return KeyMaterial(public_pem, private_pem)


def write_private_key(path: str, pem: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(pem)


def add_membership_arguments(parser: argparse.ArgumentParser) -> None:
    """ORG GROUP and exactly one of --user/--client/--group (group-add, group-remove)."""
    parser.add_argument("org", metavar="ORG")
    parser.add_argument("group", metavar="GROUP")
    member = parser.add_mutually_exclusive_group(required=True)
    member.add_argument("--user", metavar="USER")
    member.add_argument("--client", metavar="CLIENT")
    member.add_argument("--group", dest="member_group", metavar="GROUP")


def chosen_member(args: Any) -> tuple[str, str]:
    """(kind, name) of the member named by add_membership_arguments' flags."""
    if args.user:
        return "user", args.user
    if args.client:
        return "client", args.client
    return "group", args.member_group


def add_key_arguments(parser: argparse.ArgumentParser, public_help: str) -> None:
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--public-key", metavar="FILE", help=public_help)
    keys.add_argument("--key-out", metavar="FILE", help="generate a key pair; private key here")


def replace_key(ctx: Context, kind: str, name: str, args: Any) -> int:
    material = key_material(args.public_key, args.key_out)
    with open_store(ctx, changes=True) as store:
        org = require_org(store, args.org)
        if not store.update_principal(org.id, name, kind, public_key=material.public_pem):
            raise CommandFailed(f"{kind} {name!r} does not exist in {org.name}")
    if material.private_pem is not None:
        write_private_key(args.key_out, material.private_pem)
        ctx.say(f"Replaced the key of {kind} {name} in {org.name}; private key in {args.key_out}")
    else:
        ctx.say(f"Replaced the key of {kind} {name} in {org.name}")
    return EXIT_OK


BROKER_NOTICE_TIMEOUT = 2.0  # seconds; the broker re-reads the store within a minute anyway


def tell_broker_key_deleted(ctx: Context, org_id: str, node: str) -> None:
    from pushd.broker.control_client import BrokerClient, BrokerUnavailable, control_path

    run_dir = Path(ctx.settings.get("run_dir"))
    if not control_path(run_dir).exists():
        return
    client = BrokerClient(run_dir, timeout=BROKER_NOTICE_TIMEOUT)
    try:
        client.forget_session_key(org_id, node)
    except BrokerUnavailable:
        ctx.warn("warning: the broker did not answer; it stops using the node's session key "
                 "when it next reloads the keys (within a minute)")
    finally:
        client.close()
