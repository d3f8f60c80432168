"""Delete a user from an organization of the local store; its group memberships go with it.

Every API worker refuses the user from its next request on (401), whatever
principal_cache_ttl is. Jobs the user started keep their history.
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import identity
from pushd_ctl.context import EXIT_OK, CommandFailed, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", metavar="USER")
    parser.add_argument("--org", required=True, metavar="ORG")


def run(ctx: Context, args: Any) -> int:
    with identity.open_store(ctx, changes=True) as store:
        org = identity.require_org(store, args.org)
        if not store.delete_principal(org.id, args.user, "user"):
            raise CommandFailed(f"user {args.user!r} does not exist in {org.name}")
    ctx.say(f"Deleted user {args.user} from {org.name}")
    return EXIT_OK
