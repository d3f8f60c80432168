"""glibc heap settings for pushd's long-running processes (the broker and the API workers).

    limit_fragmentation(threshold=MMAP_THRESHOLD, *, mallopt=None, environ=os.environ) -> bool
        mallopt(M_MMAP_THRESHOLD, threshold) once, at start, before the process allocates much;
        False (and nothing done) where the C library has no mallopt (musl) or the operator set
        glibc's own MALLOC_MMAP_THRESHOLD_ / GLIBC_TUNABLES mmap_threshold, which then wins.

Why: glibc serves an allocation below its mmap threshold (128 KiB, then raised dynamically up
to 32 MiB) from an arena and keeps it there once freed. The broker allocates and frees, at a
high rate and interleaved with long-lived blocks, buffers of 8-16 KiB: libzmq's per-connection
batch buffers and the 16 KiB chunks of its message pipes, Curve state, each node restart and
reconnect making and dropping a set. The arenas then fill with free holes that neither reuse nor
malloc_trim closes: in the 30-minute soak (bench/bench_soak.py) the broker's RSS grew 20.8 %
from minute 5 to 30, still growing, with no Python-level growth. With such buffers mapped on
their own (an mmap each, given back to the kernel by free()) it grew 6.1 %, all of it by minute
15. The price is a system call and page faults per buffer made: ~0.1 s more broker CPU in an
8,000-node job (bench/RESULTS.md, closing sitting). On pushd's own libzmq build (2 KiB pipe
chunks, omnibus/pyzmq/build-wheel) the chunks fall under the threshold and the batch buffers
remain above it; that pair measured +0.81 % (bench/RESULTS.md, ninth session, with this setting;
not measured without it). Called at start so it also holds in
processes forked from the caller (the gunicorn arbiter's workers); the exec'd broker calls it
itself.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD = 8192  # bytes: libzmq's 8 KiB batch buffers and 16 KiB pipe chunks and up


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    try:
        function = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def _operator_chose(environ: Mapping[str, str]) -> bool:
    return "MALLOC_MMAP_THRESHOLD_" in environ or "mmap_threshold" in environ.get(
        "GLIBC_TUNABLES", "")


def limit_fragmentation(
    threshold: int = MMAP_THRESHOLD,
    *,
    mallopt: Callable[[int, int], int] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> bool:
    if _operator_chose(environ):
        log.info("malloc mmap threshold left as the environment sets it")
        return False
    function = mallopt if mallopt is not None else _glibc_mallopt()
    if function is None:
        return False
    # mallopt returns 1 on success, 0 on error (a threshold above glibc's maximum).
    return bool(function(M_MMAP_THRESHOLD, threshold))
