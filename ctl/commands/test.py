"""Smoke-test the running server: a throwaway client runs one job on a local node.

Creates a throwaway admin user and client (organization pushd-smoke-test), starts a
push-jobs-client subprocess for that client with a whitelist of 'echo', waits until the node is
available, runs a job on it and reports each step; the principals are removed afterwards.
Exit 0 when everything passed. Parts that are not built yet are reported as "not yet: ...".
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl.context import EXIT_FAILURE, EXIT_OK, Context
from pushd_ctl.smoke import SmokeTest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="per step (default 60)")  # fmt: skip
    parser.add_argument("--keep", action="store_true",
                        help="keep the throwaway principals and files")  # fmt: skip


def run(ctx: Context, args: Any) -> int:
    passed = SmokeTest(ctx, timeout=args.timeout, keep=args.keep).run()
    ctx.say("Smoke test passed." if passed else "Smoke test failed.")
    return EXIT_OK if passed else EXIT_FAILURE
