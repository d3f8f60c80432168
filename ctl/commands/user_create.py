"""Create a user in an organization of the local store, with its public key.

Give the user's existing public key (--public-key FILE, PEM) or let a 2048-bit key pair be
generated (--key-out FILE receives the private key, 0600; the file must not exist). --admin adds
the user to the organization's admins group (who may start jobs when no pushy_job_writers group
exists).
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import identity
from pushd_ctl.context import EXIT_OK, CommandFailed, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", metavar="USER")
    parser.add_argument("--org", required=True, metavar="ORG")
    parser.add_argument("--admin", action="store_true", help="add to the org's admins group")
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--public-key", metavar="FILE", help="the user's RSA public key (PEM)")
    keys.add_argument("--key-out", metavar="FILE", help="generate a key pair; private key here")


def run(ctx: Context, args: Any) -> int:
    name = identity.check_name("user", args.user)
    material = identity.key_material(args.public_key, args.key_out)
    with identity.open_store(ctx, changes=True) as store:
        org = identity.require_org(store, args.org)
        if store.get_principal(org.id, name, "user") is not None:
            raise CommandFailed(f"user {name!r} already exists in {org.name}")
        with store.transaction():
            store.create_principal(org.id, name, "user", material.public_pem, admin=args.admin)
            if args.admin:
                store.add_group_member(org.id, "admins", "user", name, create_group=True)
    if material.private_pem is not None:
        identity.write_private_key(args.key_out, material.private_pem)
        ctx.say(f"Created user {name} in {org.name}; private key in {args.key_out}")
    else:
        ctx.say(f"Created user {name} in {org.name}")
    return EXIT_OK
