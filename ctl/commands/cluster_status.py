"""Show the members of this server's cluster (the servers sharing its PostgreSQL database).

One line per member: its name (cluster_member_name), host, API / heartbeat / command ports, the
nodes it holds (available/all), the active jobs it coordinates, how long its lease has left
(or "expired": the member stopped renewing it, and another takes over its jobs) and when it
started (UTC). --json prints the same as a JSON list. On SQLite there is no cluster: one line
says so, exit 0. A database that cannot be read is a one-line error, exit 1.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from pushd_ctl.context import EXIT_OK, CommandFailed, Context

from pushd.errors import StoreError

NOT_A_CLUSTER = (
    "not a cluster: SQLite serves one server (set postgresql['enable'] to form a cluster)"
)
HEADINGS = (
    "MEMBER", "HOST", "API", "HEARTBEAT", "COMMAND", "NODES(AVAIL/ALL)", "JOBS", "LEASE", "STARTED",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the members as JSON")


def run(ctx: Context, args: Any) -> int:
    settings = ctx.settings
    if not settings.get("postgresql.enable"):
        ctx.say(NOT_A_CLUSTER)
        return EXIT_OK
    members = _members(settings)
    if args.json:
        ctx.say(json.dumps([_document(member) for member in members], indent=2))
        return EXIT_OK
    if not members:
        ctx.say("no cluster members: no server has started on this database")
        return EXIT_OK
    rows = [HEADINGS] + [_row(member) for member in members]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADINGS))]
    for row in rows:
        ctx.say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                .rstrip())  # fmt: skip
    return EXIT_OK


def _members(settings: Any) -> list[Any]:
    from pushd import store

    try:
        store.open_database(settings)
        try:
            return list(store.cluster.members())
        finally:
            store.close_database()
    except StoreError as err:
        where = f"{settings.get('postgresql.vip')}:{settings.get('postgresql.port')}"
        raise CommandFailed(f"database {settings.get('postgresql.database_name')} at {where}: "
                            f"{' '.join(str(err).split())}") from None  # fmt: skip


def _time(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds") + "Z"  # stored as naive UTC


def _lease(member: Any) -> str:
    return f"{member.lease_left:.0f} s" if member.alive else "expired"


def _row(member: Any) -> tuple[str, ...]:
    return (
        member.member, member.host, str(member.api_port), str(member.heartbeat_port),
        str(member.command_port), f"{member.available_nodes}/{member.nodes}", str(member.jobs),
        _lease(member), _time(member.started_at),
    )


def _document(member: Any) -> dict[str, Any]:
    return {
        "member": member.member,
        "host": member.host,
        "api_port": member.api_port,
        "heartbeat_port": member.heartbeat_port,
        "command_port": member.command_port,
        "nodes": member.nodes,
        "available_nodes": member.available_nodes,
        "jobs": member.jobs,
        "lease_left": round(member.lease_left, 1) if member.alive else None,
        "expired": not member.alive,
        "started_at": _time(member.started_at),
        "renewed_at": _time(member.renewed_at),
    }
