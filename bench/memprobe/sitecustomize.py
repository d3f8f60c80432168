"""Memory probe for benchmarks only: NOT part of pushd. Loaded when a benchmark runs with
``--memprobe`` (PYTHONPATH=bench/memprobe, PUSHD_BENCH_MEMPROBE=DIR), in every server process,
but it acts only in the broker (its /proc/self/cmdline names ``pushd.broker`` and not the
supervisor's launcher). There it

- starts tracemalloc at interpreter start (1 frame: cheap enough to leave the broker's loop
  representative; the traced total is what Python objects hold), and
- runs a daemon thread that, whenever ``DIR/memprobe-request-<label>`` appears, writes
  ``DIR/memprobe-<label>.json`` and deletes the request:
      {"rss", "traced", "traced_peak",
       "by_line": [[file:line, bytes, count], ...]        (top 40 tracemalloc lines)
       "by_type": [[type name, count, getsizeof bytes], ...] (top 40 gc-tracked types)
       "arenas": [{"system", "in_use", "free", "mmap"}...]   (glibc malloc_info, per arena)
       "smaps": {"heap", "anon", "file", "stack"}}           (RSS by mapping kind, bytes)
  A label starting with ``trim`` first calls glibc's ``malloc_trim(0)`` (free pages of every
  arena back to the kernel) and adds ``"rss_before_trim"``: how much of the RSS was memory
  malloc held free.

``PUSHD_BENCH_MEMPROBE_ROLES`` (comma-separated, default ``broker``) says where it acts: with
``workers`` in the API workers too (``workers`` alone: not in the broker, whose malloc arenas
tracemalloc's own tables and snapshots then leave alone); ``broker-arenas``: in the broker
without tracemalloc (only rss, arenas, smaps and the trim: malloc's view undisturbed). In the
API workers tracemalloc starts in the gunicorn arbiter (so every worker it forks inherits it)
and each forked worker runs the same thread for requests named
``DIR/memprobe-worker-request-<pid>-<label>``, answered in ``DIR/memprobe-<pid>-<label>.json``.

Environment variables the broker might need for the probe itself are not changed: malloc
settings under test are set by the benchmark in the server's environment.
"""

from __future__ import annotations

import os
import time

_sleep = time.sleep  # before gevent's monkey patching in the API workers


def _is_broker() -> bool:
    try:
        with open("/proc/self/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return b"pushd.broker" in argv and b"pushd.server.supervisor" not in argv


def _smaps() -> dict[str, int]:
    kinds = {"heap": 0, "anon": 0, "file": 0, "stack": 0}
    kind = "anon"
    with open("/proc/self/smaps") as handle:
        for line in handle:
            head = line.split()
            if not head:
                continue
            if not head[0].endswith(":"):  # a mapping header: address perms offset dev inode path
                path = head[5] if len(head) > 5 else ""
                if path == "[heap]":
                    kind = "heap"
                elif path.startswith("[stack"):
                    kind = "stack"
                elif path.startswith("/"):
                    kind = "file"
                else:
                    kind = "anon"
            elif head[0] == "Rss:":
                kinds[kind] += int(head[1]) * 1024
    return kinds


def _arenas() -> list[dict[str, int]]:
    import ctypes
    import re
    import tempfile

    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(suffix=".xml") as tmp:
        fp = libc.fopen(tmp.name.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        with open(tmp.name) as handle:
            text = handle.read()
    arenas = []
    for block in re.findall(r'<heap nr="\d+">(.*?)</heap>', text, re.S):
        def total(kind: str, block: str = block) -> int:
            found = re.search(rf'<total type="{kind}" count="\d+" size="(\d+)"/>', block)
            return int(found.group(1)) if found else 0

        system = re.search(r'<system type="current" size="(\d+)"/>', block)
        free = total("fast") + total("rest")
        current = int(system.group(1)) if system else 0
        arenas.append({"system": current, "free": free, "in_use": current - free,
                       "mmap": total("mmap")})
    return arenas


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _snapshot(path: str, trim: bool = False) -> None:
    import collections
    import gc
    import json
    import sys
    import tracemalloc

    before_trim = None
    if trim:
        import ctypes

        before_trim = _rss()
        ctypes.CDLL(None).malloc_trim(0)
    # malloc's and the kernel's view first: the snapshot below allocates (and frees) a lot.
    arenas, smaps, rss = _arenas(), _smaps(), _rss()
    by_line: list[list[object]] = []
    by_type: list[list[object]] = []
    traced = peak = 0
    if tracemalloc.is_tracing():
        stats = tracemalloc.take_snapshot().statistics("lineno")
        by_line = [[f"{s.traceback[0].filename}:{s.traceback[0].lineno}", s.size, s.count]
                   for s in stats[:40]]
        counts: collections.Counter[str] = collections.Counter()
        sizes: collections.Counter[str] = collections.Counter()
        for obj in gc.get_objects():
            name = type(obj).__qualname__
            counts[name] += 1
            sizes[name] += sys.getsizeof(obj)
        by_type = [[n, counts[n], sizes[n]] for n, _ in sizes.most_common(40)]
        traced, peak = tracemalloc.get_traced_memory()
    report = {"rss": rss, "rss_before_trim": before_trim, "traced": traced, "traced_peak": peak,
              "by_line": by_line, "by_type": by_type, "arenas": arenas, "smaps": smaps}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(report, handle)
    os.replace(tmp, path)


def _is_arbiter() -> bool:
    try:
        with open("/proc/self/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return b"pushd.server" in argv


def _watch(directory: str, prefix: str = "memprobe-request-", out: str = "memprobe-") -> None:
    while True:
        _sleep(0.5)
        try:
            names = [n for n in os.listdir(directory) if n.startswith(prefix)]
        except OSError:
            continue
        for name in names:
            label = name[len(prefix):]
            try:
                _snapshot(os.path.join(directory, f"{out}{label}.json"),
                          trim=label.startswith("trim"))
            finally:
                os.unlink(os.path.join(directory, name))


def _start() -> None:
    directory = os.environ.get("PUSHD_BENCH_MEMPROBE")
    if not directory:
        return
    import threading
    import tracemalloc

    roles = os.environ.get("PUSHD_BENCH_MEMPROBE_ROLES", "broker").split(",")
    if ("broker" in roles or "broker-arenas" in roles) and _is_broker():
        if "broker" in roles:
            tracemalloc.start(1)
        threading.Thread(target=_watch, args=(directory,), name="memprobe", daemon=True).start()
    elif "workers" in roles and _is_arbiter():
        tracemalloc.start(1)

        def in_worker() -> None:
            pid = os.getpid()
            threading.Thread(target=_watch, name="memprobe", daemon=True,
                             args=(directory, f"memprobe-worker-request-{pid}-",
                                   f"memprobe-{pid}-")).start()

        os.register_at_fork(after_in_child=in_worker)


_start()
