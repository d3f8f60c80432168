"""Add a user, client or group to a group of an organization, creating the group if needed.

Push jobs reads the groups pushy_job_readers, pushy_job_writers and admins. The member must
exist (a user or client of the organization, or one of its groups).
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import identity
from pushd_ctl.context import EXIT_OK, CommandFailed, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    identity.add_membership_arguments(parser)


def run(ctx: Context, args: Any) -> int:
    group = identity.check_name("group", args.group)
    kind, member = identity.chosen_member(args)
    if kind == "group" and member == group:
        raise CommandFailed(f"a group cannot contain itself ({group})")
    with identity.open_store(ctx, changes=True) as store:
        org = identity.require_org(store, args.org)
        exists = (
            store.get_group(org.id, member) is not None
            if kind == "group"
            else store.get_principal(org.id, member, kind) is not None
        )
        if not exists:
            raise CommandFailed(f"{kind} {member!r} does not exist in {org.name}")
        added = store.add_group_member(org.id, group, kind, member, create_group=True)
    if added:
        ctx.say(f"Added {kind} {member} to {org.name}/{group}")
    else:
        ctx.say(f"{kind} {member} is already in {org.name}/{group}")
    return EXIT_OK
