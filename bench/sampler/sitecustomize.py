"""In-process CPU sampler for benchmarks only: NOT part of pushd. Loaded when a benchmark runs
with ``--sample`` (PYTHONPATH=bench/sampler, PUSHD_BENCH_SAMPLE=DIR), in every process started
with that environment (server, broker, API workers, emulator and its workers, forks included).

Why: py-spy cannot read this machine's interpreter ("Failed to find python version"), and a
profile of one process says nothing about where two shared cores go. Each process runs a daemon
thread that looks for ``DIR/sample-request-<label>`` every 0.2 s. Its content is ``SECONDS``;
every process answers each label once: for SECONDS a SIGPROF timer (ITIMER_PROF: every
SAMPLE_INTERVAL of the process's CPU time) runs a handler in the main thread, between two
bytecodes, which weights each Python thread's current stack by the CPU time that thread used
since the previous sample (``time.pthread_getcpuclockid``; a thread blocked in poll() or a lock
costs nothing). Then it writes ``DIR/sample-<label>-<pid>.txt``: a first line ``# pid=..
ppid=.. cpu_total=.. wall=.. cmd=.. #`` (cpu_total: the whole process over the window, from
/proc/self/stat, libzmq's I/O threads and other C threads included) and then py-spy's raw
format, one ``frame;frame;... MICROSECONDS`` line per stack (frames ``function (file:line)``),
which pushd_bench.profiling.parse_profile reads.

A signal, not a sampling thread: a thread can only look at the others when it holds the GIL,
i.e. when they release it (zmq calls, hmac.digest), so a thread sampler charges their CPU to
those calls. The main thread's samples are fair; other threads' (the journal writer) are taken
at the same moments, wherever they are. The handler costs a few per cent of a busy process: use
the profiles for shares, not for the headline figures.
"""

from __future__ import annotations

import _thread
import collections
import os
import signal
import sys
import time

# Kept before gevent's monkey patching (API workers): the sampler must sleep and name itself
# as the OS thread it is, not as a greenlet.
_sleep = time.sleep
_get_ident = _thread.get_ident
_start_new_thread = _thread.start_new_thread

SAMPLE_INTERVAL = 0.002  # seconds of the process's CPU time between samples
POLL = 0.2


def _cmdline() -> str:
    try:
        with open("/proc/self/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _process_cpu() -> float:
    with open("/proc/self/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _frame_name(code: object, line: int) -> str:
    filename = getattr(code, "co_filename", "?")
    for marker in ("/site-packages/", "/pushd/", "/bench/", "/lib/python3"):
        index = filename.rfind(marker)
        if index >= 0:
            filename = filename[index + 1:]
            break
    return f"{getattr(code, 'co_name', '?')} ({filename}:{line})"


def _stack(frame: object) -> str:
    names = []
    while frame is not None:
        names.append(_frame_name(frame.f_code, frame.f_lineno))  # type: ignore[attr-defined]
        frame = frame.f_back  # type: ignore[attr-defined]
    return ";".join(reversed(names))


class _Sampler:
    def __init__(self) -> None:
        self.active = False
        self.counts: collections.Counter[str] = collections.Counter()
        self.last: dict[int, float] = {}
        self.watcher = -1

    def on_signal(self, _signum: int, frame: object) -> None:
        if not self.active:
            return
        me = _get_ident()
        for ident, current in sys._current_frames().items():
            if ident == self.watcher:
                continue
            try:
                used = time.clock_gettime(time.pthread_getcpuclockid(ident))
            except (OSError, ValueError):
                continue
            before = self.last.get(ident)
            self.last[ident] = used
            if before is None or used <= before:
                continue
            # The main thread's own frame here is this handler's: take the interrupted one.
            self.counts[_stack(frame if ident == me else current)] += int((used - before) * 1e6)


_SAMPLER = _Sampler()


def _sample(seconds: float, out_path: str) -> None:
    sampler = _SAMPLER
    sampler.counts = collections.Counter()
    sampler.last = {}
    sampler.watcher = _get_ident()
    cpu_start = _process_cpu()
    wall_start = time.monotonic()
    sampler.active = True
    signal.setitimer(signal.ITIMER_PROF, SAMPLE_INTERVAL, SAMPLE_INTERVAL)
    try:
        _sleep(seconds)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        sampler.active = False
    _sleep(0.05)  # a handler that was running finishes
    cpu = _process_cpu() - cpu_start
    wall = time.monotonic() - wall_start
    tmp = f"{out_path}.tmp"
    with open(tmp, "w") as handle:
        handle.write(f"# pid={os.getpid()} ppid={os.getppid()} cpu_total={cpu:.3f} "
                     f"wall={wall:.3f} cmd={_cmdline()[:300]} #\n")
        for stack, micros in sampler.counts.most_common():
            handle.write(f"{stack} {micros}\n")
    os.replace(tmp, out_path)


def _watch(directory: str) -> None:
    done: set[str] = set()
    while True:
        _sleep(POLL)
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if not name.startswith("sample-request-") or name in done:
                continue
            done.add(name)
            label = name[len("sample-request-"):]
            try:
                with open(os.path.join(directory, name)) as handle:
                    seconds = float(handle.read().strip() or "10")
            except (OSError, ValueError):
                continue
            try:
                _sample(seconds, os.path.join(directory, f"sample-{label}-{os.getpid()}.txt"))
            except Exception as err:  # a benchmark aid must never break the process
                print(f"sampler: {err!r}", file=sys.stderr)


def _start() -> None:
    directory = os.environ.get("PUSHD_BENCH_SAMPLE")
    if directory:
        _start_new_thread(_watch, (directory,))


if os.environ.get("PUSHD_BENCH_SAMPLE"):
    # Installed here, in the main thread at start-up (only the main thread may); forks keep it.
    # The timer is armed only while sampling (a fork starts without it).
    signal.signal(signal.SIGPROF, _SAMPLER.on_signal)
_start()
os.register_at_fork(after_in_child=_start)
