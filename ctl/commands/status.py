"""Show the state of the service (or every service); exit 0 when all run, 3 otherwise (LSB).

Each line is runit's: ``run: SERVICE: (pid N) Ns; run: log: (pid M) Ms``.
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import layout, services, supervision
from pushd_ctl.context import EXIT_NOT_RUNNING, EXIT_OK, Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    services.add_service_argument(parser)


def run(ctx: Context, args: Any) -> int:
    settings = ctx.settings
    code = EXIT_OK
    for service in services.selected_services(args):
        status = supervision.service_status(settings, service)
        if status.state == "unsupervised":
            where = layout.service_path(settings, service)
            ctx.say(f"down: {service}: not supervised ({status.text or where})")
        else:
            ctx.say(status.text.replace(str(layout.service_path(settings, service)), service))
        if not status.running:
            code = EXIT_NOT_RUNNING
    return code
