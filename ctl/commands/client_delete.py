"""Delete a client (a node) from an organization; its group memberships go with it.

The node can no longer authenticate; jobs it took part in keep their history.
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import identity
from pushd_ctl.context import EXIT_OK, CommandFailed, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node", metavar="NODE")
    parser.add_argument("--org", required=True, metavar="ORG")


def run(ctx: Context, args: Any) -> int:
    with identity.open_store(ctx, changes=True) as store:
        org = identity.require_org(store, args.org)
        if not store.delete_principal(org.id, args.node, "client"):
            raise CommandFailed(f"client {args.node!r} does not exist in {org.name}")
        store.delete_session_key(org.id, args.node)
    identity.tell_broker_key_deleted(ctx, org.id, args.node)
    ctx.say(f"Deleted client {args.node} from {org.name}")
    return EXIT_OK
