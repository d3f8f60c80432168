"""`push-jobs`: knife-push's grammar without Ruby or knife.

Public API:
    main(argv=None, io=None, environ=None) -> int     the console script (returns the exit code)
    build_parser() -> argparse.ArgumentParser

Grammar (knife's, plus `job abort` and `job watch`; docs/cli.md has every flag and exit code):
    push-jobs job start [options] COMMAND [NODE ...]
    push-jobs job list [--status S] [--limit N]
    push-jobs job status JOB [--include-file]
    push-jobs job output [--channel stdout|stderr] [--follow] JOB [NODE ...]
    push-jobs job abort JOB
    push-jobs job watch [JOB]
    push-jobs job rerun JOB [--failed|--all|NODE ...]
    push-jobs node status [NODE | QUERY ...] [--search QUERY]
    push-jobs dashboard [--print-url]
Configuration options (`-c`, `-s/--server-url` (only `--server-url` on `job start`, where `-s` is
knife's `--search`), `-u`, `-k`, `--profile`, `--ssl-verify-mode`) and `--json` are accepted
before or after the subcommand. Errors are one line on stderr starting `ERROR:`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from pushd_knife import commands, exitcodes
from pushd_knife.chefhttp import ChefHTTP
from pushd_knife.config import SSL_VERIFY_MODES, load_config
from pushd_knife.exitcodes import CliError

from pushd.errors import PushdError

PROG = "push-jobs"


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one `ERROR:` line and exit code USAGE."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see `{self.prog} --help`)", exitcodes.USAGE)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def _add_common(parser: argparse.ArgumentParser, *, top: bool, short_server: bool = True) -> None:
    """Configuration and output options; on subcommands they must not reset values given earlier."""
    default = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("configuration")
    group.add_argument("-c", "--config", default=default, metavar="FILE",
                       help="knife.rb / config.rb to read (default: knife's lookup)")
    server_flags = ("-s", "--server-url") if short_server else ("--server-url",)
    group.add_argument(*server_flags, dest="server_url", default=default, metavar="URL",
                       help="Chef server URL with the organization, e.g. https://chef/organizations/acme")
    group.add_argument("-u", "--user", default=default, metavar="USER",
                       help="API client (user) name to sign requests as")
    group.add_argument("-k", "--key", default=default, metavar="KEY",
                       help="private key of that user")
    group.add_argument("--profile", default=default, metavar="PROFILE",
                       help="profile in ~/.chef/credentials (default: $CHEF_PROFILE or default)")
    group.add_argument("--ssl-verify-mode", default=default, choices=SSL_VERIFY_MODES,
                       help="verify_peer (default) or verify_none")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_const", const="json", dest="format",
                     default=default, help="print JSON for scripts (progress goes to stderr)")
    out.add_argument("-F", "--format", dest="format", choices=("summary", "json"),
                     default=default, help="summary (knife's default) or json")


def _add_wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--poll-interval", type=_positive_float, default=1.0, metavar="SECONDS",
                        help="seconds between progress dots / polls (default 1.0)")
    parser.add_argument("--wait-timeout", type=_positive_float, default=None, metavar="SECONDS",
                        help="stop waiting after this long (the job goes on; exit code 8)")
    parser.add_argument("--strict", action="store_true",
                        help="also fail (exit 3) when nodes were nacked or unavailable")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Run and inspect Chef push jobs (knife's grammar).")
    _add_common(parser, top=True)
    areas = parser.add_subparsers(dest="area", metavar="{job,node,dashboard}",
                                  parser_class=_Parser)

    job = areas.add_parser("job", help="start, list, inspect, abort and watch jobs")
    job_commands = job.add_subparsers(
        dest="action", metavar="{start,list,status,output,abort,watch,rerun}",
        parser_class=_Parser
    )

    start = job_commands.add_parser("start", help="start a job on nodes",
                                    usage="%(prog)s [options] COMMAND [NODE ...]")
    start.add_argument("command", nargs="?", help="the command (a whitelist key on the nodes)")
    start.add_argument("nodes", nargs="*", metavar="NODE", help="nodes to run it on")
    start.add_argument("--timeout", type=int, default=None, metavar="TIMEOUT",
                       help="run timeout in seconds (server default 3600)")
    start.add_argument("-q", "--quorum", default="100%", metavar="QUORUM",
                       help="nodes that must accept: a number or a percentage (default 100%%)")
    start.add_argument("-s", "--search", default=None, metavar="QUERY",
                       help="run on the nodes matching this Chef search query")
    start.add_argument("-b", "--nowait", action="store_true",
                       help="print the job id and exit without waiting")
    start.add_argument("--capture", action="store_true", help="capture stdout and stderr")
    start.add_argument("--with-env", default=None, metavar="JSON",
                       help="environment variables as a JSON object, e.g. '{\"test\": \"foo\"}'")
    start.add_argument("--in-dir", default=None, metavar="DIR", help="working directory")
    start.add_argument("--as-user", default=None, metavar="USER", help="user to run as")
    start.add_argument("--file", default=None, metavar="PATH",
                       help="send this file; the command finds it in $CHEF_PUSH_JOB_FILE")
    start.add_argument("--no-feed", action="store_true",
                       help="poll the job instead of following its event feed")
    start.add_argument("--max-concurrency", default=None, metavar="N|N%",
                       help="run on at most this many nodes at once (a number or a percentage"
                            " of the nodes, rounded up)")
    start.add_argument("--max-errors", default=None, metavar="N|N%",
                       help="halt once more than this many nodes failed (a number or a"
                            " percentage of the nodes, rounded down)")
    start.add_argument("--follow-output", action="store_true",
                       help="capture and print the nodes' output as it comes (stdout and "
                            "stderr, `node1: line` when several nodes), like `job output "
                            "--follow`")
    _add_wait_options(start)
    _add_common(start, top=False, short_server=False)

    rerun = job_commands.add_parser(
        "rerun", help="run a job again on its failed (default), all or the named nodes",
        usage="%(prog)s JOB [--failed|--all|NODE ...]")
    rerun.add_argument("job_id", metavar="JOB")
    rerun.add_argument("nodes", nargs="*", metavar="NODE", help="re-run on these nodes")
    which = rerun.add_mutually_exclusive_group()
    which.add_argument("--failed", action="store_true",
                       help="every node that did not succeed (the default)")
    which.add_argument("--all", action="store_true", help="every node of the job")
    rerun.add_argument("-b", "--nowait", action="store_true",
                       help="print the new job's id and exit without waiting")
    rerun.add_argument("--no-feed", action="store_true",
                       help="poll the job instead of following its event feed")
    _add_wait_options(rerun)
    _add_common(rerun, top=False)

    listing = job_commands.add_parser("list", help="list jobs")
    listing.add_argument("--status", default=None, help="only jobs with this status")
    listing.add_argument("--limit", type=int, default=None, help="at most this many jobs")
    _add_common(listing, top=False)

    status = job_commands.add_parser("status", help="show a job")
    status.add_argument("job_id", metavar="JOB")
    status.add_argument("--include-file", action="store_true", help="include the job's file")
    _add_common(status, top=False)

    output = job_commands.add_parser("output", help="print a node's captured output")
    output.add_argument("job_id", metavar="JOB")
    output.add_argument("nodes", nargs="*", metavar="NODE",
                        help="one node: its output as is; none or several: each under a header")
    output.add_argument("--channel", default="stdout", help="stdout (default) or stderr")
    output.add_argument("--follow", action="store_true",
                        help="print the output as the job runs (`node1: line` when several "
                             "nodes show) until it ends; exit with the job's exit rule")
    _add_wait_options(output)
    _add_common(output, top=False)

    abort = job_commands.add_parser("abort", help="abort a job")
    abort.add_argument("job_id", metavar="JOB")
    _add_common(abort, top=False)

    watch = job_commands.add_parser("watch", help="print a job's events as they happen")
    watch.add_argument("job_id", metavar="JOB", nargs="?",
                       help="the job; without it, jobs of the organization starting and ending")
    _add_wait_options(watch)
    _add_common(watch, top=False)

    node = areas.add_parser("node", help="node availability")
    node_commands = node.add_subparsers(dest="action", metavar="{status}", parser_class=_Parser)
    node_status = node_commands.add_parser("status", help="show node availability")
    node_status.add_argument("nodes", nargs="*", metavar="NODE",
                             help="node names, or search queries (anything with a ':')")
    node_status.add_argument("--search", default=None, metavar="QUERY",
                             help="the nodes matching this Chef search query")
    _add_common(node_status, top=False)

    board = areas.add_parser("dashboard", help="log in to the web dashboard (one-time link)")
    board.add_argument("--print-url", action="store_true",
                       help="print the login URL instead of opening a browser")
    _add_common(board, top=False)
    return parser


Handler = Callable[[Any, commands.Io, commands.Connect], int]
HANDLERS: dict[tuple[str, str], Handler] = {
    ("job", "start"): commands.job_start,
    ("job", "list"): commands.job_list,
    ("job", "status"): commands.job_status,
    ("job", "output"): commands.job_output,
    ("job", "abort"): commands.job_abort,
    ("job", "watch"): commands.job_watch,
    ("job", "rerun"): commands.job_rerun,
    ("node", "status"): commands.node_status,
    ("dashboard", ""): commands.dashboard,
}


def _connector(args: Any, environ: Mapping[str, str]) -> commands.Connect:
    def connect() -> ChefHTTP:
        config = load_config(
            config_path=args.config, profile=args.profile, server_url=args.server_url,
            user=args.user, key=args.key, ssl_verify_mode=args.ssl_verify_mode, environ=environ,
        )
        return ChefHTTP(config.server_url, config.user, config.key_pem,
                        ssl_verify=config.ssl_verify, ca_file=config.ca_file,
                        trusted_certs_dir=config.trusted_certs_dir,
                        sign_version=config.sign_version)
    return connect


START_USAGE = f"usage: {PROG} job start [options] COMMAND [NODE ...]\n"


def _take_trailing_nodes(parser: argparse.ArgumentParser, args: Any, extras: list[str]) -> None:
    """Node names after an option (`start CMD --capture node1`) that argparse left over.

    argparse stops filling `nargs="*"` positionals at the first option; knife (optparse)
    accepts positional words anywhere, so they are collected here.
    """
    if not extras:
        return
    unknown = [word for word in extras if word.startswith("-")]
    if unknown or not isinstance(getattr(args, "nodes", None), list):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extras)}")
    if getattr(args, "command", "") is None:
        args.command, extras = extras[0], extras[1:]
    args.nodes.extend(extras)


def main(
    argv: Sequence[str] | None = None,
    io: commands.Io | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    io = io or commands.Io()
    environ = os.environ if environ is None else environ
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
        _take_trailing_nodes(parser, args, extras)
        handler = HANDLERS.get((args.area or "", getattr(args, "action", None) or ""))
        if handler is None:
            io.stderr.write(parser.format_usage())
            raise CliError("give a subcommand: job start|list|status|output|abort|watch or"
                           " node status or dashboard", exitcodes.USAGE)
        args.json = args.format == "json"
        return handler(args, io, _connector(args, environ))
    except CliError as exc:
        io.stderr.write(f"ERROR: {exc.message}\n")
        if exc.code == exitcodes.USAGE and exc.message == "No job specified.":
            io.stderr.write(START_USAGE)
        io.stderr.flush()
        return exc.code
    except PushdError as exc:
        io.stderr.write(f"ERROR: {exc}\n")
        return exitcodes.ERROR
    except KeyboardInterrupt:
        io.stderr.write("\nInterrupted.\n")
        return exitcodes.INTERRUPTED
    except BrokenPipeError:
        # `push-jobs job list | head`: the reader went away; not an error worth a traceback.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the exit-time flush
        except OSError:
            pass
        return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
