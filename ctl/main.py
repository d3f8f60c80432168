"""``push-jobs-server-ctl [--config FILE] COMMAND [ARGS]``: operate a pushd appliance.

    main(argv=None) -> int          the console script
    build_parser() -> argparse.ArgumentParser

Each command is one module of :mod:`pushd_ctl.commands` (``graceful-kill`` lives in
``graceful_kill.py``) exposing ``add_arguments(parser)`` and ``run(ctx, args) -> int``; its
docstring is its help (first line in the command list, all of it in ``COMMAND --help``).
Errors are one line on stderr and a non-zero exit status (see :mod:`pushd_ctl.context`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from pushd_ctl.commands import COMMANDS, module_name
from pushd_ctl.context import EXIT_FAILURE, EXIT_USAGE, PROG, CommandFailed, Context

from pushd.errors import ConfigError, PushdError

__all__ = ["build_parser", "main"]



def _load(name: str) -> ModuleType:
    return importlib.import_module(f"pushd_ctl.commands.{module_name(name)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Operate the push jobs server appliance.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="opscode-push-jobs-server.rb (default: $PUSH_JOBS_SERVER_CONFIG, then "
        "/etc/opscode-push-jobs-server/ and /etc/chef/)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    commands.required = True
    for name in COMMANDS:
        module = _load(name)
        doc = (module.__doc__ or "").strip()
        summary = doc.splitlines()[0] if doc else name
        sub = commands.add_parser(
            name,
            help=summary,
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(args.config)
    try:
        return int(args._module.run(ctx, args))
    except CommandFailed as failure:
        ctx.warn(f"{PROG}: {failure.message}")
        return failure.exit_code
    except ConfigError as err:
        ctx.warn(f"{PROG}: {err}")
        return EXIT_USAGE
    except PushdError as err:
        ctx.warn(f"{PROG}: {err}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
