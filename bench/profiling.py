"""Sampling profiles of a running process with py-spy (``pip install py-spy``), summarised.

    profile_process(pid, seconds, out_path, rate=200) -> Profile | None   None without py-spy
    Profile.samples; Profile.top_self(n) -> [(function, share)]; Profile.top_total(n)
    parse_profile(path) -> Profile          a py-spy ``-f raw`` file
    Profile.render(n=15) -> str     two tables: self time (leaf frames) and inclusive time

py-spy samples every thread (``--threads`` off: stacks are merged), including idle time in
poll(); the summary drops samples whose leaf is the poller's wait so shares are of busy time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

IDLE_LEAVES = ("poll (zmq", "zmq_poll", "_poll (", "select (", "wait (threading", "epoll")


@dataclass
class Profile:
    samples: int = 0
    idle: int = 0
    self_counts: Counter[str] = field(default_factory=Counter)
    total_counts: Counter[str] = field(default_factory=Counter)

    @property
    def busy(self) -> int:
        return self.samples - self.idle

    def top_self(self, n: int) -> list[tuple[str, float]]:
        busy = max(1, self.busy)
        return [(name, count / busy) for name, count in self.self_counts.most_common(n)]

    def top_total(self, n: int) -> list[tuple[str, float]]:
        busy = max(1, self.busy)
        return [(name, count / busy) for name, count in self.total_counts.most_common(n)]

    def render(self, n: int = 15) -> str:
        lines = [f"samples={self.samples} busy={self.busy} idle={self.idle}",
                 "self (share of busy samples):"]
        lines += [f"  {share:6.1%}  {name}" for name, share in self.top_self(n)]
        lines.append("inclusive:")
        lines += [f"  {share:6.1%}  {name}" for name, share in self.top_total(n)]
        return "\n".join(lines)


def parse_profile(path: Path) -> Profile:
    profile = Profile()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        profile.samples += count
        leaf = frames[-1]
        if any(marker in leaf for marker in IDLE_LEAVES):
            profile.idle += count
            continue
        profile.self_counts[leaf] += count
        for name in set(frames):
            profile.total_counts[name] += count
    return profile


def profile_process(pid: int, seconds: float, out_path: Path, rate: int = 200) -> Profile | None:
    # Installed into the running interpreter's environment (a virtualenv's bin/ need not be
    # on PATH), or anywhere on PATH.
    beside = Path(sys.executable).parent / "py-spy"
    exe = str(beside) if beside.exists() else shutil.which("py-spy")
    if exe is None:
        return None
    subprocess.run(
        [exe, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", str(rate), "-f", "raw",
         "-o", str(out_path), "--nonblocking"],
        check=True, capture_output=True, timeout=seconds + 60,
    )
    return parse_profile(out_path)
