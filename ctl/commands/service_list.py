"""List the services of the appliance (marked * when reconfigure has written them)."""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import layout
from pushd_ctl.context import EXIT_OK, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    return None


def run(ctx: Context, args: Any) -> int:
    settings = ctx.settings
    for service in layout.SERVICES:
        mark = "*" if layout.service_path(settings, service).is_dir() else ""
        ctx.say(f"{service}{mark}")
    return EXIT_OK
