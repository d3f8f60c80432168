"""Remove a user, client or group from a group of an organization.

Takes effect on every API worker's next request (for example a user removed from admins or
pushy_job_writers can no longer start jobs), whatever principal_cache_ttl is.
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import identity
from pushd_ctl.context import EXIT_OK, CommandFailed, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    identity.add_membership_arguments(parser)


def run(ctx: Context, args: Any) -> int:
    kind, member = identity.chosen_member(args)
    with identity.open_store(ctx, changes=True) as store:
        org = identity.require_org(store, args.org)
        if store.get_group(org.id, args.group) is None:
            raise CommandFailed(f"group {args.group!r} does not exist in {org.name}")
        if not store.remove_group_member(org.id, args.group, kind, member):
            raise CommandFailed(f"{kind} {member} is not in {org.name}/{args.group}")
    ctx.say(f"Removed {kind} {member} from {org.name}/{args.group}")
    return EXIT_OK
