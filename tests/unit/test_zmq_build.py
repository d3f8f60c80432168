"""pushd's pyzmq build (omnibus/pyzmq/build-wheel): libzmq pipes of 32-message chunks."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from pushd import zmq_build

# 500 inproc pipes, each carrying 600 one-frame messages (read as they come), in a fresh
# process: the RSS each pipe adds. libzmq's stock build touches ~28 KiB per pipe (two 16 KiB
# chunks once its 256th message has passed), pushd's ~2 KiB.
_PIPES_PROBE = r"""
import zmq

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

context = zmq.Context()
pairs = []
for i in range(500):
    a, b = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    a.bind(f"inproc://p{i}")
    b.connect(f"inproc://p{i}")
    pairs.append((a, b))
before = rss()
for a, b in pairs:
    for _ in range(600):
        a.send(b"x")
        b.recv()
print((rss() - before) / len(pairs) / 1024)
"""


def test_a_busy_pipe_holds_a_few_kib_not_two_16_kib_chunks() -> None:
    done = subprocess.run([sys.executable, "-c", _PIPES_PROBE], capture_output=True, text=True,
                          timeout=120, check=True)
    assert float(done.stdout) < 8, f"{done.stdout.strip()} KiB per pipe"


def test_the_installed_pyzmq_is_pushds_build() -> None:
    # scripts/install-deps installs it; a failing build there must not pass unnoticed.
    assert zmq_build.PUSHD_LABEL in metadata.version("pyzmq")
    assert zmq_build.stock_warning() is None


def test_another_build_is_named_with_what_it_costs() -> None:
    warning = zmq_build.stock_warning("27.4.0")
    assert warning is not None
    assert "pyzmq 27.4.0 is not pushd's build" in warning
    assert "~125 KB per node instead of ~60 KB" in warning
    assert zmq_build.stock_warning("27.3.0+pushd.pipe32") is None

