"""Create a client (a node) in an organization of the local store, with its public key.

Give the node's existing public key (--public-key FILE, PEM) or let a key pair be generated
(--key-out FILE receives the private key, 0600: copy it to the node as its client key). The
client joins the organization's clients group.
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import identity
from pushd_ctl.context import EXIT_OK, CommandFailed, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node", metavar="NODE")
    parser.add_argument("--org", required=True, metavar="ORG")
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--public-key", metavar="FILE", help="the node's RSA public key (PEM)")
    keys.add_argument("--key-out", metavar="FILE", help="generate a key pair; private key here")


def run(ctx: Context, args: Any) -> int:
    name = identity.check_name("client", args.node)
    material = identity.key_material(args.public_key, args.key_out)
    with identity.open_store(ctx, changes=True) as store:
        org = identity.require_org(store, args.org)
        if store.get_principal(org.id, name, "client") is not None:
            raise CommandFailed(f"client {name!r} already exists in {org.name}")
        with store.transaction():
            store.create_principal(org.id, name, "client", material.public_pem)
            store.add_group_member(org.id, "clients", "client", name, create_group=True)
    if material.private_pem is not None:
        identity.write_private_key(args.key_out, material.private_pem)
        ctx.say(f"Created client {name} in {org.name}; private key in {args.key_out}")
    else:
        ctx.say(f"Created client {name} in {org.name}")
    return EXIT_OK
