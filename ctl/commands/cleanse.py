"""Stop everything and delete the appliance's data, logs, service dirs and running config.

Removes dir (data_dir, run_dir, service_dir under it), log_directory, any data_dir, run_dir,
service_dir or sqlite_path set outside it, and opscode-push-jobs-server-running.json. The config
file itself is kept. A PostgreSQL database is not dropped. Asks for confirmation unless --yes.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from pushd_ctl import layout, remembered, supervision
from pushd_ctl.context import EXIT_FAILURE, EXIT_OK, CommandFailed, Context

from pushd.sqlite_lock import lock_path

PROTECTED = {Path(p) for p in ("/", "/etc", "/var", "/var/opt", "/var/log", "/opt", "/usr",
                               "/home", "/tmp", "/root", "/var/tmp")}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _targets(settings: Any) -> list[Path]:
    paths = [Path(settings.get(name)) for name in
             ("dir", "log_directory", "data_dir", "run_dir", "service_dir")]  # fmt: skip
    if not settings.get("postgresql.enable"):
        sqlite = Path(settings.get("sqlite_path"))
        paths += [sqlite, Path(f"{sqlite}-wal"), Path(f"{sqlite}-shm"), lock_path(sqlite)]
    paths.append(layout.running_json_path(settings))
    unique: list[Path] = []
    for path in paths:
        if path in PROTECTED:
            raise CommandFailed(f"refusing to delete {path}")
        if not any(path == kept or kept in path.parents for kept in unique):
            unique.append(path)
    return unique


def _confirmed(ctx: Context, targets: list[Path]) -> bool:
    ctx.say("This stops the push jobs server and deletes:")
    for path in targets:
        ctx.say(f"  {path}")
    if not ctx.stdin.isatty():
        return False
    ctx.stdout.write("Type 'yes' to continue: ")
    ctx.stdout.flush()
    return ctx.stdin.readline().strip().lower() == "yes"


def run(ctx: Context, args: Any) -> int:
    settings = ctx.settings
    targets = _targets(settings)
    if not args.yes and not _confirmed(ctx, targets):
        raise CommandFailed("cleanse: not confirmed (use --yes to skip the question)")
    problems = supervision.stop_supervision(settings)
    for problem in problems:
        ctx.warn(f"push-jobs-server-ctl: cleanse: {problem}")
    if problems:
        ctx.warn("push-jobs-server-ctl: cleanse: processes still run; nothing deleted")
        return EXIT_FAILURE
    for path in targets:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=False)
            ctx.say(f"removed {path}")
        elif path.exists() or path.is_symlink():
            path.unlink()
            ctx.say(f"removed {path}")
    if ctx.config_path is not None:
        remembered.forget(ctx.config_path)
    ctx.say("Cleansed. Run 'push-jobs-server-ctl reconfigure' to start again.")
    return EXIT_OK
