"""List the organizations of the local principal store, one name a line."""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import identity
from pushd_ctl.context import EXIT_OK, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", "-v", action="store_true", help="also show guids")


def run(ctx: Context, args: Any) -> int:
    with identity.open_store(ctx) as store:
        orgs = store.list_organizations()
    for org in orgs:
        ctx.say(f"{org.name}  {org.id}" if args.verbose else org.name)
    return EXIT_OK
