"""Replace a client's (a node's) public key in an organization of the local store.

Give the new public key (--public-key FILE, PEM) or let a key pair be generated (--key-out FILE
receives the private key, 0600: copy it to the node as its client key). Requests signed with
the old key are refused (401) from every API worker's next request on; a node already
connected keeps its session key until it next fetches its config (client-delete ends a
session at once).
"""

from __future__ import annotations

import argparse
from typing import Any

from pushd_ctl import identity
from pushd_ctl.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("node", metavar="NODE")
    parser.add_argument("--org", required=True, metavar="ORG")
    identity.add_key_arguments(parser, "the node's new RSA public key (PEM)")


def run(ctx: Context, args: Any) -> int:
    return identity.replace_key(ctx, "client", args.node, args)
