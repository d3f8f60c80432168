"""Send the service a HUP signal.

Without SERVICE, every service. Uses runit's ``sv hup``.
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import services
from pushd_ctl.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    services.add_service_argument(parser)


def run(ctx: Context, args: Any) -> int:
    return services.run_sv(ctx, args, "hup")
