"""pushd.broker.memory: heap memory the broker's threads freed goes back to the kernel once a
minute (the soak's broker RSS grew with freed memory glibc kept), and the journal's housekeeping
runs each of its chores on its own schedule."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

from pushd.broker.memory import CHORE_RETRY, Chores, MallocTrim


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_chores_run_each_task_when_it_is_due_and_retry_one_that_fails() -> None:
    clock = Clock()
    calls: list[str] = []

    def every_10() -> float:
        calls.append("a")
        return 10.0

    def every_60() -> float:
        calls.append("b")
        return 60.0

    chores = Chores(every_10, None, every_60, clock=clock)
    assert len(chores) == 2  # None (retention off) is no task
    assert chores() == 10.0 and calls == ["a", "b"]
    clock.now += 10
    assert chores() == 10.0 and calls == ["a", "b", "a"]
    clock.now += 50
    assert chores() == 10.0 and calls == ["a", "b", "a", "a", "b"]

    def broken() -> float:
        calls.append("x")
        raise RuntimeError("database gone")

    failing = Chores(broken, every_10, clock=clock)
    calls.clear()
    assert failing() == 10.0 and calls == ["x", "a"]  # the other chore still ran
    clock.now += CHORE_RETRY - 1
    failing()
    assert calls.count("x") == 1  # not again before CHORE_RETRY
    clock.now += 1
    failing()
    assert calls.count("x") == 2


def test_a_trim_counts_what_it_gave_back() -> None:
    sizes = iter([500, 300, 300, 400])
    trims: list[int] = []
    trim = MallocTrim(30.0, trim=lambda: trims.append(1), rss=lambda: next(sizes))
    assert trim() == 30.0 and trim() == 30.0
    assert (len(trims), trim.calls, trim.released) == (2, 2, 200)  # a growth counts as 0


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).malloc_trim  # noqa: B018 - the lookup is the check
    except AttributeError:
        return False
    return True


@pytest.mark.skipif(not _glibc(), reason="malloc_trim is glibc's")
def test_memory_a_thread_freed_goes_back_to_the_kernel() -> None:
    # A thread (like libzmq's I/O thread) allocates 2,000 blocks of 60 KiB and frees every
    # other one: free() keeps those holes in its arena, so the RSS stays; one MallocTrim call
    # gives them back. In a subprocess, so the test's own heap does not blur the figures.
    script = textwrap.dedent("""
        import threading
        from pushd.broker.memory import MallocTrim, rss_bytes

        kept = []
        def work():
            blocks = [b"x" * 61440 for _ in range(2000)]  # touched, not calloc'd
            kept.extend(blocks[::2])
            del blocks
        thread = threading.Thread(target=work)
        thread.start(); thread.join()
        before = rss_bytes()
        MallocTrim()()
        print(before - rss_bytes())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    released = int(done.stdout)
    assert released > 30 * 2**20, f"only {released / 2**20:.1f} MiB given back"
