"""`push-jobs-client`: command line entry point of the node agent.

    push-jobs-client [-c CONFIG] [-k KEY] [-S URL] [-N NODE] [-l LEVEL] [-L LOG] [-M BYTES]
                     [-d FILE_DIR] [--allow_unencrypted] [--state-dir DIR]
    push-jobs-client --status [-c CONFIG] [--state-dir DIR]
    push-jobs-client -v

Public API:

    main(argv: list[str] | None = None) -> int      console script `push-jobs-client`
    build_parser() -> argparse.ArgumentParser
    format_status(status: dict, now: float) -> list[str]

The stock flags override the config file (`-c`, else the first existing file of the stock
search list; with none, the flags alone must name the server). Exit statuses: 0 normal stop,
2 bad configuration or key (one line on stderr naming the file and line). `--status` prints the
connection state, the last server heartbeat and the current job from the running daemon's
status file and exits 0 when online, 1 when running but not online, 3 when not running.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any

from pushd_client import __version__
from pushd_client.config import (
    DEFAULT_CONFIG_PATHS,
    ClientConfig,
    find_default_config,
    from_values,
    load_config,
)
from pushd_client.statefile import StateDir

from pushd.errors import ConfigError

EXIT_OK = 0
EXIT_NOT_ONLINE = 1
EXIT_CONFIG = 2
EXIT_NOT_RUNNING = 3
# The daemon rewrites its status at least every server heartbeat while connected.
STALE_STATUS_SECONDS = 120.0

# flag dest -> setting name
_OVERRIDES = {
    "client_key": "client_key",
    "chef_server_url": "chef_server_url",
    "node_name": "node_name",
    "log_level": "log_level",
    "log_location": "log_location",
    "max_body_size": "max_body_size",
    "file_dir": "file_dir",
    "allow_unencrypted": "allow_unencrypted",
    "state_dir": "state_dir",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="push-jobs-client",
        description="Chef Push Jobs node client (pushd).",
        epilog="Config search list: " + ", ".join(DEFAULT_CONFIG_PATHS),
    )
    parser.add_argument("-c", "--config", help="config file (.rb subset or .yml/.yaml)")
    parser.add_argument("-k", "--client_key", help="the node's RSA private key")
    parser.add_argument("-S", "--server", dest="chef_server_url",
                        help="Chef Server URL ending in /organizations/ORG")
    parser.add_argument("-N", "--node-name", dest="node_name", help="this node's name")
    parser.add_argument("-l", "--log_level", help="debug, info, warn, error or fatal")
    parser.add_argument("-L", "--logfile", dest="log_location", help="log file (default STDOUT)")
    parser.add_argument("-M", "--max-body-size", dest="max_body_size", type=int,
                        help="largest message body to send, in bytes")
    parser.add_argument("-d", "--file_dir", help="directory for job data files")
    parser.add_argument("--allow_unencrypted", action="store_true", default=None,
                        help="talk to a 1.x server that offers no Curve key")
    parser.add_argument("--state-dir", dest="state_dir", help="state and status directory")
    parser.add_argument("--status", action="store_true",
                        help="show the running client's connection and job, then exit")
    parser.add_argument("-v", "--version", action="version",
                        version=f"Push Client: {__version__}")
    return parser


def _config(args: argparse.Namespace) -> ClientConfig:
    overrides: dict[str, Any] = {
        setting: getattr(args, dest) for dest, setting in _OVERRIDES.items()
    }
    path = args.config or find_default_config()
    if path is None:
        return from_values(overrides)
    return load_config(path, overrides)


def _setup_logging(config: ClientConfig) -> None:
    level = {"warn": "WARNING", "fatal": "CRITICAL"}.get(config.log_level,
                                                          config.log_level.upper())
    if config.log_location == "STDOUT":
        handler: logging.Handler = logging.StreamHandler(sys.stdout)
    elif config.log_location == "STDERR":
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(config.log_location)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def format_status(status: dict[str, Any], now: float) -> list[str]:
    lines = [
        f"push-jobs-client pid {status.get('pid')}: {status.get('connection')}"
        + ("" if status.get("encrypted") is not False else " (unencrypted 1.x mode)"),
        f"node {status.get('node_name')} in org {status.get('organization')} at "
        f"{status.get('chef_server_url')}",
    ]
    beat = status.get("last_server_heartbeat")
    if isinstance(beat, int | float):
        lines.append(f"last server heartbeat: {now - beat:.1f}s ago "
                     f"(server incarnation {status.get('server_incarnation')})")
    else:
        lines.append("last server heartbeat: never")
    job = status.get("job") or {}
    if job.get("state", "idle") == "idle":
        lines.append("job: none (idle)")
    else:
        text = f"job: {job.get('job_id')} {job.get('state')} {job.get('command')!r}"
        if "pid" in job:
            text += f" pid {job['pid']} for {job.get('running_for')}s"
        if "stopping" in job:
            text += f" (ending: {job['stopping']})"
        lines.append(text)
    if status.get("last_error"):
        lines.append(f"last error: {status['last_error']}")
    updated = status.get("updated_at")
    if isinstance(updated, int | float) and now - updated > STALE_STATUS_SECONDS:
        lines.append(f"warning: the client last updated this status {now - updated:.0f}s ago")
    return lines


def _status(config: ClientConfig) -> int:
    status = StateDir(config.state_dir).read_status()
    if status is None or not _alive(status.get("pid")) or status.get("connection") == "stopped":
        print(f"push-jobs-client is not running (no live status in {config.state_dir})")
        return EXIT_NOT_RUNNING
    for line in format_status(status, time.time()):
        print(line)
    return EXIT_OK if status.get("connection") == "online" else EXIT_NOT_ONLINE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.status and args.chef_server_url is None and not (
            args.config or find_default_config()
        ):
            # --status needs only the state dir; do not insist on a server URL.
            args.chef_server_url = "http://localhost/organizations/status"
        config = _config(args)
    except ConfigError as err:
        print(f"push-jobs-client: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if args.status:
        return _status(config)
    try:
        _setup_logging(config)
    except OSError as err:
        print(f"push-jobs-client: cannot open log {config.log_location}: {err.strerror}",
              file=sys.stderr)
        return EXIT_CONFIG
    from pushd.chefauth import load_private_key_file

    try:
        client_key = load_private_key_file(config.client_key)
    except (OSError, ValueError) as err:
        print(f"push-jobs-client: {config.client_key}: cannot load the client key: {err}",
              file=sys.stderr)
        return EXIT_CONFIG
    from pushd_client.agent import Agent
    from pushd_client.proctree import ContainmentError

    try:
        agent = Agent(config, client_key, reload_config=lambda: _config(args))
    except ContainmentError as err:
        print(f"push-jobs-client: {config.source}: {err}", file=sys.stderr)
        return EXIT_CONFIG
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
