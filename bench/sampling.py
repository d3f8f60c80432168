"""CPU profiles of every benchmark process at once, from the in-process sampler.

    enable(directory) -> None          before the server starts: PYTHONPATH gains bench/sampler
                                       and PUSHD_BENCH_SAMPLE=directory (inherited by the server,
                                       its broker and workers, the emulator and its workers)
    request(directory, label, seconds) -> None     every such process samples for `seconds`
    collect(directory, label, timeout=30.0) -> list[ProcessProfile]
                                       waits until the answers stop coming (seconds after the
                                       window), parses them; with $PUSHD_BENCH_SAMPLE_KEEP set,
                                       also copies the raw files into that directory
    role(cmd) -> str                   "broker", "api", "emulator", ... from a command line
    render(profiles, top=12) -> str    CPU per role over the window, then each busy role's
                                       hottest frames (self and inclusive, share of its CPU)

See bench/sampler/sitecustomize.py for how samples are taken (CPU-time weighted, Python threads
only; cpu_total is the whole process from /proc, so the gap is C threads such as libzmq's).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pushd_bench.profiling import Profile, parse_profile

SAMPLER_DIR = Path(__file__).resolve().parent / "sampler"


@dataclass
class ProcessProfile:
    pid: int
    ppid: int
    cmd: str
    cpu_total: float
    wall: float
    profile: Profile

    @property
    def role(self) -> str:
        return role(self.cmd)


def enable(directory: str | os.PathLike[str]) -> None:
    Path(directory).mkdir(parents=True, exist_ok=True)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SAMPLER_DIR), os.environ.get("PYTHONPATH", "")) if p)
    os.environ["PUSHD_BENCH_SAMPLE"] = str(directory)


def request(directory: str | os.PathLike[str], label: str, seconds: float) -> None:
    path = Path(directory) / f"sample-request-{label}"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{seconds}\n")
    os.replace(tmp, path)


def collect(directory: str | os.PathLike[str], label: str,
            timeout: float = 30.0) -> list[ProcessProfile]:
    folder = Path(directory)
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        found = sorted(folder.glob(f"sample-{label}-*.txt"))
        if found and len(found) == seen:
            break
        seen = len(found)
        time.sleep(2.0)
    (folder / f"sample-request-{label}").unlink(missing_ok=True)
    keep = os.environ.get("PUSHD_BENCH_SAMPLE_KEEP")
    out = []
    for path in sorted(folder.glob(f"sample-{label}-*.txt")):
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)
        header = path.read_text(errors="replace").split("\n", 1)[0]
        fields = dict(part.split("=", 1) for part in header[2:].split(" cmd=")[0].split())
        cmd = header.split(" cmd=", 1)[1].removesuffix(" #") if " cmd=" in header else "?"
        out.append(ProcessProfile(int(fields["pid"]), int(fields["ppid"]), cmd,
                                  float(fields["cpu_total"]), float(fields["wall"]),
                                  parse_profile(path)))
    return out


def role(cmd: str) -> str:
    if "pushd.broker" in cmd and "supervisor" not in cmd:
        return "broker"
    if "pushd.server" in cmd:
        return "server"  # the arbiter and its gunicorn workers (forks: same command line)
    if "pushd_bench" in cmd or "emulator" in cmd:
        return "emulator"
    return cmd.split()[0].rsplit("/", 1)[-1] if cmd else "?"


def render(profiles: list[ProcessProfile], top: int = 12) -> str:
    lines = []
    by_role: dict[str, list[ProcessProfile]] = {}
    for p in profiles:
        by_role.setdefault(p.role, []).append(p)
    for name, group in sorted(by_role.items()):
        cpu = sum(p.cpu_total for p in group)
        sampled = sum(p.profile.samples for p in group) / 1e6
        lines.append(f"{name}: {len(group)} process(es), CPU {cpu:.2f} s "
                     f"(Python threads sampled {sampled:.2f} s) over "
                     f"{max(p.wall for p in group):.1f} s")
    for name, group in sorted(by_role.items()):
        merged = Profile()
        for p in group:
            merged.samples += p.profile.samples
            merged.idle += p.profile.idle
            merged.self_counts.update(p.profile.self_counts)
            merged.total_counts.update(p.profile.total_counts)
        if merged.samples < 10_000:  # under 10 ms of CPU: nothing to show
            continue
        lines.append(f"--- {name}")
        lines.append(merged.render(top))
    return "\n".join(lines)
