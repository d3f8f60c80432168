"""Follow the logs of the service (or every service): svlogd's ``current`` files.

Shows the last -n lines (default 10) of each, then what is appended, until Ctrl-C. A rotation
by svlogd (``current`` renamed, a new one started) is followed. --no-follow stops after the last
lines. When the config file does not load, the logs are found from its last reconfigure and the
error is shown first.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from pushd_ctl import layout, logs, services
from pushd_ctl.context import EXIT_OK, PROG, Context

POLL_INTERVAL = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    services.add_service_argument(parser)
    parser.add_argument("-n", "--lines", type=int, default=10, metavar="N",
                        help="lines of history to show first (default 10)")  # fmt: skip
    parser.add_argument("--no-follow", dest="follow", action="store_false",
                        help="print the last lines and exit")  # fmt: skip


def run(ctx: Context, args: Any) -> int:
    settings, error = ctx.settings_or_running()
    if error is not None:
        ctx.warn(f"{PROG}: {error} (logs found from the last reconfigure's settings)")
    chosen = services.selected_services(args)
    files = [(s, layout.log_dir(settings, s) / "current") for s in chosen]
    several = len(files) > 1
    for label, path in files:
        if not path.exists():
            ctx.warn(f"{label}: no log yet at {path}")
        for line in logs.last_lines(path, max(0, args.lines)):
            ctx.say(f"{label}: {line}" if several else line)
    if not args.follow:
        return EXIT_OK
    follower = logs.LogFollower(files, prefix=several)
    try:
        while True:
            for line in follower.poll():
                ctx.say(line)
            time.sleep(POLL_INTERVAL)
    except KeyboardInterrupt:
        return EXIT_OK
