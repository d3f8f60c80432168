"""Create an organization in the local principal store.

Names follow Chef Server's rules (lowercase letters, digits, _ and -).
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import identity
from pushd_ctl.context import EXIT_OK, CommandFailed, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("org", metavar="ORG")
    parser.add_argument("--full-name", metavar="TEXT", help="descriptive name (default ORG)")


def run(ctx: Context, args: Any) -> int:
    name = identity.check_name("organization", args.org)
    with identity.open_store(ctx, changes=True) as store:
        if store.get_organization(name) is not None:
            raise CommandFailed(f"organization {name!r} already exists")
        org = store.create_organization(name, args.full_name or name)
    ctx.say(f"Created organization {org.name} (guid {org.id})")
    return EXIT_OK
