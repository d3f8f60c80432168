"""``python -m pushd.broker [--config FILE]``: run the broker in the foreground.

The config file is found as the server finds it (``--config``, then PUSH_JOBS_SERVER_CONFIG, then
the standard paths; see pushd.config). Logs one line per event to stderr. Exit status 0 after
SIGTERM/SIGINT, 2 when the configuration is wrong.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys

from pushd.errors import PushdError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pushd.broker")
    parser.add_argument("--config", help="opscode-push-jobs-server.rb to read")
    args = parser.parse_args(argv)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: how to see where a broker hangs.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(process)d broker %(name)s %(levelname)s %(message)s",
    )
    from pushd.config import find_config_file, load_settings

    try:
        settings = load_settings(find_config_file(args.config))
    except (PushdError, OSError) as err:
        print(f"pushd broker: {err}", file=sys.stderr)
        return 2
    from pushd.broker.startup import run_broker

    return run_broker(settings)


if __name__ == "__main__":
    sys.exit(main())
