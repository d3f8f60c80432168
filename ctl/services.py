"""Shared plumbing of the per-service commands (start, stop, hup, ...).

    add_service_argument(parser)              optional SERVICE positional
    selected_services(args) -> list[str]      the named service, or all; CommandFailed (exit 2)
                                              naming the known services otherwise
    require_configured(ctx) -> None           CommandFailed when reconfigure never ran
    run_sv(ctx, args, action, *, wait=30) -> int
        ``sv ACTION`` on each selected service, printing sv's line for each; 0 when every sv
        call succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import layout, supervision
from pushd_ctl.context import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandFailed, Context

__all__ = ["add_service_argument", "require_configured", "run_sv", "selected_services"]


def add_service_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "service", nargs="?", metavar="SERVICE", help=f"one of: {', '.join(layout.SERVICES)}"
    )


def selected_services(args: Any) -> list[str]:
    name = getattr(args, "service", None)
    if not name:
        return list(layout.SERVICES)
    if name not in layout.SERVICES:
        raise CommandFailed(
            f"unknown service {name!r} (services: {', '.join(layout.SERVICES)})", EXIT_USAGE
        )
    return [name]


def require_configured(ctx: Context) -> None:
    settings = ctx.settings
    if not any(layout.service_path(settings, s).is_dir() for s in layout.SERVICES):
        raise CommandFailed(
            f"no services under {settings.get('service_dir')}: run "
            "'push-jobs-server-ctl reconfigure' first"
        )


def run_sv(ctx: Context, args: Any, action: str, *, wait: int = 30) -> int:
    require_configured(ctx)
    settings = ctx.settings
    code = EXIT_OK
    for service in selected_services(args):
        result = supervision.sv(settings, action, service, wait=wait)
        if result.output:
            ctx.say(result.output)
        if result.returncode != 0:
            code = EXIT_FAILURE
    return code
