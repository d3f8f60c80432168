"""Start the service (or every service), and runsvdir first if it is not running.

A service that is running is left alone.
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import services, supervision
from pushd_ctl.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    services.add_service_argument(parser)


def run(ctx: Context, args: Any) -> int:
    services.require_configured(ctx)
    pid, started = supervision.ensure_runsvdir(ctx.settings)
    if started:
        ctx.say(f"started runsvdir (pid {pid})")
    return services.run_sv(ctx, args, "start")
