"""Show the configuration reconfigure would apply (resolved, as JSON; secrets masked).

Every setting appears with its value from the file, else its derived or default value; the
"no_effect" section lists the settings accepted for compatibility that have no effect in pushd,
each with the reason. With --diff, only the settings that differ from the running config are
shown (one without effect says so). On a Chef Server host, the settings taken from the Chef Server
(those the file leaves unset) are listed on stderr, so stdout stays JSON.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pushd_ctl import layout
from pushd_ctl.commands.reconfigure import read_running
from pushd_ctl.context import EXIT_OK, Context

from pushd import settings as registry
from pushd.chefserver import ORIGIN


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--diff", action="store_true", help="only what differs from the running config"
    )


def run(ctx: Context, args: Any) -> int:
    settings = ctx.settings
    taken = [name for name in settings if settings.origin(name) == ORIGIN]
    if taken:
        ctx.warn(f"From the Chef Server ({settings.get('chef_server_running_json')}): "
                 + ", ".join(taken))
    if args.diff:
        previous = read_running(layout.running_json_path(settings))
        if previous is None:
            ctx.say("(no running config: reconfigure has not run)")
            return EXIT_OK
        masked_old = previous.as_dict(redact=True)
        masked_new = settings.as_dict(redact=True)
        for name, _old, _new in previous.diff(settings):
            namespace, _, key = name.rpartition(".")
            section = namespace or "opscode_pushy_server"
            note = _note(name)
            ctx.say(
                f"{name}: {json.dumps(masked_old[section][key])} -> "
                f"{json.dumps(masked_new[section][key])}" + (f" ({note})" if note else "")
            )
        return EXIT_OK
    document: dict[str, Any] = settings.as_dict(redact=True)
    document["no_effect"] = {name: _note(name) for name in registry.NO_EFFECT}
    ctx.say(json.dumps(document, indent=2, default=str))
    return EXIT_OK


def _note(name: str) -> str:
    """"Accepted for compatibility, no effect: why" for such a setting, else ""."""
    reason = registry.lookup(name).no_effect
    return f"{registry.NO_EFFECT_NOTE.lower()}: {reason}" if reason else ""
