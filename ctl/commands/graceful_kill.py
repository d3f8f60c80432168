"""Stop the service gracefully, then kill whatever is left of it.

Sends TERM and waits up to --wait seconds (default 30); if the process is still there it gets
KILL. The service stays down until start.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

from pushd_ctl import services, supervision
from pushd_ctl.context import EXIT_FAILURE, EXIT_OK, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    services.add_service_argument(parser)
    parser.add_argument("--wait", type=int, default=30, metavar="SECONDS",
                        help="seconds to wait before KILL (default 30)")  # fmt: skip


def run(ctx: Context, args: Any) -> int:
    services.require_configured(ctx)
    settings = ctx.settings
    code = EXIT_OK
    for service in services.selected_services(args):
        supervision.sv(settings, "stop", service, wait=args.wait)
        status = supervision.service_status(settings, service)
        if status.state == "run":
            ctx.say(f"{service}: still running after {args.wait}s, sending KILL")
            supervision.sv(settings, "kill", service)
            supervision.wait_until(functools.partial(_not_running, settings, service), 10)
        status = supervision.service_status(settings, service)
        ctx.say(status.text)
        if status.state == "run":
            code = EXIT_FAILURE
    return code


def _not_running(settings: Any, service: str) -> bool:
    return supervision.service_status(settings, service).state != "run"
