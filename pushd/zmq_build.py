"""Which libzmq this process runs on, and whether it is pushd's build of it.

    PUSHD_LABEL                      the local version label of pushd's pyzmq wheel
    describe(version=None) -> str    "libzmq 4.3.4, pyzmq 27.3.0+pushd.pipe32.curveheap"
    stock_warning(version=None) -> str | None
                                     what a broker on another pyzmq build costs, or None on pushd's

pushd ships its own pyzmq wheel (omnibus/pyzmq/build-wheel): libzmq with 32-message pipe chunks
instead of 256, which halves a node's memory at the broker (~60 KB instead of ~125 KB) and
ends the broker's RSS climb over a pipe's first few hundred messages, and with the Curve
handshake's plaintext buffers on the heap instead of in guarded, mlocked pages, which takes
most of the kernel's work out of each handshake (a restart's reconnecting nodes: ~600 -> ~350 us
of broker CPU each). pushd works on any pyzmq, so a broker on another build says so once at
start, where an operator sizing a host looks.
"""

from __future__ import annotations

import zmq

PUSHD_LABEL = "+pushd.pipe32.curveheap"


def _pyzmq_version() -> str:
    # Imported here: importlib.metadata takes ~20 ms to import, and the broker's start imports
    # this module before its first heartbeat (pushd.broker.startup).
    from importlib import metadata

    try:
        return metadata.version("pyzmq")
    except metadata.PackageNotFoundError:  # run from a source tree without metadata
        return zmq.__version__


def describe(version: str | None = None) -> str:
    return f"libzmq {zmq.zmq_version()}, pyzmq {version or _pyzmq_version()}"


def stock_warning(version: str | None = None) -> str | None:
    version = version or _pyzmq_version()
    if PUSHD_LABEL in version:
        return None
    return (f"{describe(version)} is not pushd's build: libzmq's stock 16 KiB pipe chunks cost "
            "~125 KB per node instead of ~60 KB, and its guarded Curve handshake buffers ~1.7x "
            "the CPU per reconnecting node (omnibus/pyzmq/build-wheel builds pushd's)")
