"""List the groups of an organization with their members.

One line per group: ``GROUP  users: a, b  clients: c  groups: d``.
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import identity
from pushd_ctl.context import EXIT_OK, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("org", metavar="ORG")


def run(ctx: Context, args: Any) -> int:
    with identity.open_store(ctx) as store:
        org = identity.require_org(store, args.org)
        groups = [store.get_group(org.id, name) for name in store.list_groups(org.id)]
    for group in groups:
        if group is None:
            continue
        ctx.say(
            f"{group.name}  users: {', '.join(group.users) or '-'}  "
            f"clients: {', '.join(group.clients) or '-'}  groups: {', '.join(group.groups) or '-'}"
        )
    return EXIT_OK
