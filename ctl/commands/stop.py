"""Stop the service (or every service) cleanly; it stays down until start.

Sends TERM and waits up to --wait seconds (default 30); a process still running after that is
killed. runsvdir keeps supervising (use uninstall or cleanse to stop it too).
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import services
from pushd_ctl.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    services.add_service_argument(parser)
    parser.add_argument("--wait", type=int, default=30, metavar="SECONDS",
                        help="seconds to wait before killing (default 30)")  # fmt: skip


def run(ctx: Context, args: Any) -> int:
    return services.run_sv(ctx, args, "force-stop", wait=args.wait)
