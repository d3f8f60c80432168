"""Replace a user's public key in an organization of the local store.

Give the new public key (--public-key FILE, PEM) or let a 2048-bit key pair be generated
(--key-out FILE receives the private key, 0600; the file must not exist). Requests signed with
the old key are refused (401) from every API worker's next request on.
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import identity
from pushd_ctl.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user", metavar="USER")
    parser.add_argument("--org", required=True, metavar="ORG")
    identity.add_key_arguments(parser, "the user's new RSA public key (PEM)")


def run(ctx: Context, args: Any) -> int:
    return identity.replace_key(ctx, "user", args.user, args)
