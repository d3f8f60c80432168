"""Show the state of the service (or every service); exit 0 when all run, 3 otherwise (LSB).

Each line is runit's: ``run: SERVICE: (pid N) Ns; run: log: (pid M) Ms``. A service that was
never set up says which config file the ctl used (or where it looked). When the config file does
not load, the service is found from its last reconfigure and a second line gives the error.
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import layout, services, supervision
from pushd_ctl.context import EXIT_NOT_RUNNING, EXIT_OK, PROG, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    services.add_service_argument(parser)


def run(ctx: Context, args: Any) -> int:
    settings, error = ctx.settings_or_running()
    code = EXIT_OK
    for service in services.selected_services(args):
        status = supervision.service_status(settings, service)
        if status.state == "unsupervised":
            where = layout.service_path(settings, service)
            ctx.say(f"down: {service}: not configured: no service at {where}"
                    f" ({ctx.config_description()})")
        else:
            ctx.say(status.text.replace(str(layout.service_path(settings, service)), service))
        if not status.running:
            code = EXIT_NOT_RUNNING
    if error is not None:
        ctx.warn(f"{PROG}: {error} (status from the last reconfigure's settings)")
    return code
