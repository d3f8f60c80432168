"""pushd's pyzmq build (omnibus/pyzmq/build-wheel): libzmq pipes of 32-message chunks, and
Curve handshakes whose plaintext buffers come from the heap."""

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


# 300 Curve handshakes (both ends in one fresh process, after 50 to warm up): the minor page
# faults each costs. Stock libzmq 4.3 puts each handshake step's plaintext in pages libsodium
# maps, guards and mlocks for it (sodium_allocarray): ~35 faults and as many syscalls per
# handshake; pushd's build takes them from the heap: ~11.
_HANDSHAKES_PROBE = r"""
import resource
import zmq

context = zmq.Context()
server = context.socket(zmq.ROUTER)
server.curve_server = True
public, secret = zmq.curve_keypair()
server.curve_publickey, server.curve_secretkey = public, secret
port = server.bind_to_random_port("tcp://127.0.0.1")

def handshakes(count):
    clients = []
    for _ in range(count):
        client = context.socket(zmq.DEALER)
        client.curve_serverkey = public
        client.curve_publickey, client.curve_secretkey = zmq.curve_keypair()
        client.linger = 0
        client.connect(f"tcp://127.0.0.1:{port}")
        client.send(b"hello")
        clients.append(client)
    for _ in range(count):
        server.recv_multipart()
    for client in clients:
        client.close(0)

handshakes(50)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
handshakes(300)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 300)
"""


def test_a_curve_handshake_does_not_map_guarded_pages() -> None:
    done = subprocess.run([sys.executable, "-c", _HANDSHAKES_PROBE], capture_output=True,
                          text=True, timeout=120, check=True)
    assert float(done.stdout) < 20, f"{done.stdout.strip()} page faults per handshake"


def test_the_installed_pyzmq_is_pushds_build() -> None:
    # scripts/install-deps installs it; a failing build there must not pass unnoticed.
    assert zmq_build.PUSHD_LABEL in metadata.version("pyzmq")
    assert zmq_build.stock_warning() is None


def test_another_build_is_named_with_what_it_costs() -> None:
    warning = zmq_build.stock_warning("27.4.0")
    assert warning is not None
    assert "pyzmq 27.4.0 is not pushd's build" in warning
    assert "~125 KB per node instead of ~60 KB" in warning
    assert "Curve handshake" in warning
    assert zmq_build.stock_warning("27.3.0" + zmq_build.PUSHD_LABEL) is None
    assert zmq_build.stock_warning("27.3.0+pushd.pipe32") is not None  # the build before it

