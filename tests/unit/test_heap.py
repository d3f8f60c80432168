"""pushd.heap: the broker and the API's arbiter map libzmq-sized buffers (8 KiB and up) on their
own, so freeing one gives its memory back instead of leaving a hole in an arena (the soak's
broker RSS grew with such holes); an operator's own glibc setting wins."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

from pushd.heap import M_MMAP_THRESHOLD, MMAP_THRESHOLD, limit_fragmentation

GLIBC = hasattr(ctypes.CDLL(None), "mallopt")


def test_the_threshold_is_set_once_unless_the_environment_sets_one() -> None:
    calls: list[tuple[int, int]] = []

    def mallopt(option: int, value: int) -> int:
        calls.append((option, value))
        return 1

    assert limit_fragmentation(mallopt=mallopt, environ={}) is True
    assert calls == [(M_MMAP_THRESHOLD, MMAP_THRESHOLD)]
    calls.clear()
    own = {"MALLOC_MMAP_THRESHOLD_": "65536"}
    assert limit_fragmentation(mallopt=mallopt, environ=own) is False
    tunables = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}
    assert limit_fragmentation(mallopt=mallopt, environ=tunables) is False
    assert calls == []
    assert limit_fragmentation(mallopt=lambda option, value: 0, environ={}) is False  # refused


_PROBE = textwrap.dedent("""
    import sys, threading
    from pushd.broker.memory import rss_bytes
    from pushd.heap import limit_fragmentation
    if sys.argv[1] == "limit":
        limit_fragmentation(environ={})
    chunks, neighbours = [], []
    def work():  # a thread of its own, like libzmq's I/O thread (and so its own arena)
        for _ in range(2000):
            chunks.append(b"x" * 16000)  # a pipe chunk's size, touched
            neighbours.append(b"y" * 600)  # long-lived, above pymalloc's 512 bytes: malloc's
    thread = threading.Thread(target=work)
    thread.start(); thread.join()
    before = rss_bytes()
    chunks.clear()  # the connections go; no malloc_trim
    print((before - rss_bytes()) / 2**20)
""")


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_buffers_go_back_to_the_kernel_without_a_trim() -> None:
    # 2,000 freed 16 KiB buffers between live neighbours: ~31 MiB. glibc's default keeps them
    # as holes in the thread's arena (3 MiB given back on this machine); mapped on their own,
    # each free() unmaps. In subprocesses, so the test's own heap does not blur the figures.
    def given_back(mode: str) -> float:
        done = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True,
                              text=True, timeout=60, check=True)
        return float(done.stdout)

    assert given_back("default") < 10
    assert given_back("limit") > 25
