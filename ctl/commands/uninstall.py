"""Stop every service and the process supervisor (runsvdir); data, logs and config stay.

After this, 'push-jobs-server-ctl reconfigure' (or start) brings everything back.
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import supervision
from pushd_ctl.context import EXIT_FAILURE, EXIT_OK, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    return None


def run(ctx: Context, args: Any) -> int:
    problems = supervision.stop_supervision(ctx.settings)
    for problem in problems:
        ctx.warn(f"push-jobs-server-ctl: uninstall: {problem}")
    if problems:
        return EXIT_FAILURE
    ctx.say("Stopped every service and runsvdir; data and logs are kept.")
    return EXIT_OK
