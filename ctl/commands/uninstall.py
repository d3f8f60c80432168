"""Stop every service and the process supervisor (runsvdir); data, logs and config stay.

On a Chef Server host the nginx add-on files are removed first (nginx checked and reloaded), so
the Chef Server's nginx is left as it was before reconfigure.
After this, 'push-jobs-server-ctl reconfigure' (or start) brings everything back.
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import nginx_addon, supervision
from pushd_ctl.context import EXIT_FAILURE, EXIT_OK, Context

from pushd.chefserver import ChefServerHost


def add_arguments(parser: argparse.ArgumentParser) -> None:
    return None


def run(ctx: Context, args: Any) -> int:
    chef = ChefServerHost.read(ctx.settings.get("chef_server_running_json"))
    if chef is not None and chef.nginx_dir is not None:
        for action in nginx_addon.remove(chef.nginx_dir):
            ctx.say(action)
    problems = supervision.stop_supervision(ctx.settings)
    for problem in problems:
        ctx.warn(f"push-jobs-server-ctl: uninstall: {problem}")
    if problems:
        return EXIT_FAILURE
    ctx.say("Stopped every service and runsvdir; data and logs are kept.")
    return EXIT_OK
