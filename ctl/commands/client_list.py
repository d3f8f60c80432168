"""List the clients (nodes) of an organization, one name a line."""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import identity
from pushd_ctl.context import EXIT_OK, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org", required=True, metavar="ORG")


def run(ctx: Context, args: Any) -> int:
    with identity.open_store(ctx) as store:
        org = identity.require_org(store, args.org)
        clients = store.list_principals(org.id, "client")
    for client in clients:
        ctx.say(client.name)
    return EXIT_OK
