"""List users: of one organization (--org), else every user with the organizations it is in."""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import identity
from pushd_ctl.context import EXIT_OK, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org", metavar="ORG")


def run(ctx: Context, args: Any) -> int:
    with identity.open_store(ctx) as store:
        if args.org:
            org = identity.require_org(store, args.org)
            for user in store.list_principals(org.id, "user"):
                ctx.say(f"{user.name}{'  (admin)' if user.admin else ''}")
            return EXIT_OK
        memberships: dict[str, list[str]] = {}
        for org in store.list_organizations():
            for user in store.list_principals(org.id, "user"):
                memberships.setdefault(user.name, []).append(org.name)
    for name in sorted(memberships):
        ctx.say(f"{name}  ({', '.join(memberships[name])})")
    return EXIT_OK
