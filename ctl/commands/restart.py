"""Restart the service (or every service): TERM, wait until it is down, start it again.

Starts runsvdir first if it is not running.
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
    supervision.ensure_runsvdir(ctx.settings)
    return services.run_sv(ctx, args, "force-restart")
