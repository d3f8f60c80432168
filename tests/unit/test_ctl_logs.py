"""Offset-based log reading for push-jobs-server-ctl tail (ctl/logs.py) on real files."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from pushd_ctl.logs import LogFollower, last_lines


def test_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "current"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    assert last_lines(path, 3) == ["line 97", "line 98", "line 99"]
    assert last_lines(path, 0) == []
    assert last_lines(tmp_path / "missing", 5) == []
    # A bounded read drops the line it cut in half.
    assert last_lines(path, 1000, max_bytes=20) == ["line 98", "line 99"]


def test_follower_starts_at_the_end_and_waits_for_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "current"
    path.write_text("old\n")
    follower = LogFollower([("svc", path)], prefix=False)
    assert follower.poll() == []
    with open(path, "a") as handle:
        handle.write("new one\npart")
    assert follower.poll() == ["new one"]
    with open(path, "a") as handle:
        handle.write("ial\n")
    assert follower.poll() == ["partial"]


def test_follower_follows_svlogd_rotation(tmp_path: Path) -> None:
    path = tmp_path / "current"
    path.write_text("before\n")
    follower = LogFollower([("svc", path)], prefix=True)
    with open(path, "a") as handle:
        handle.write("last of the old file\n")
    os.rename(path, tmp_path / "@400000005f.s")  # what svlogd does when it rotates
    path.write_text("first of the new file\n")
    assert follower.poll() == ["svc: first of the new file"]


def test_follower_of_a_missing_file_picks_it_up_when_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "current"
    follower = LogFollower([("svc", path)], prefix=False)
    assert follower.poll() == []
    path.write_text("hello\n")
    assert follower.poll() == ["hello"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet="ab\n", max_size=20), max_size=10))
def test_follower_never_loses_or_invents_lines(tmp_path_factory: object, chunks: list[str]) -> None:
    directory = tmp_path_factory.mktemp("logs")  # type: ignore[attr-defined]
    path = directory / "current"
    path.write_text("")
    follower = LogFollower([("svc", path)], prefix=False)
    seen: list[str] = []
    for chunk in chunks:
        with open(path, "a") as handle:
            handle.write(chunk)
        seen += follower.poll()
    text = "".join(chunks)
    complete = text[: text.rfind("\n") + 1] if "\n" in text else ""
    assert seen == complete.split("\n")[:-1]
