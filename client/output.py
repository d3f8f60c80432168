"""Bounded capture of a job's output, and fitting it into one protocol message.

Public API:

    TailBuffer(limit)              keeps the last `limit` bytes written to it
        .feed(data: bytes)         append
        .total -> int              bytes ever fed (the original size)
        .data -> bytes             the kept tail
        .truncated -> bool         total > len(data)
    fit_output(stdout, stderr, budget, render) -> dict[str, object]
        The result fields for `succeeded`/`failed`: always "stdout" and "stderr" (str); when
        anything had to be cut also "truncated": {"stdout": N, "stderr": M}, the bytes of each
        stream left out (the protocol's `node_result(stdout_dropped=, stderr_dropped=)`); each
        cut text starts with TRUNCATION_MARKER naming the original byte count. `render(fields)`
        must return the encoded message body; texts are shrunk until it fits in `budget` bytes.
    TRUNCATION_MARKER              the line that starts a cut stream

The stock client dropped both streams when stdout + stderr exceeded its limit; here the tail of
each stream is kept (the end of a log is where the error is), the smaller stream is kept whole if
it can be, and invalid UTF-8 is replaced rather than failing the JSON encoding.
"""

from __future__ import annotations

from collections.abc import Callable

# The marker is shared with the server, which cuts stored output the same way (output_max_bytes).
from pushd.protocol.output import TRUNCATION_MARKER, tail_bytes

__all__ = ["TRUNCATION_MARKER", "TailBuffer", "fit_output"]


class TailBuffer:
    """The last `limit` bytes of a stream plus its total length."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.total = 0
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        self._buf += data
        overflow = len(self._buf) - self.limit
        if overflow > 0:
            del self._buf[:overflow]

    @property
    def data(self) -> bytes:
        return bytes(self._buf)

    @property
    def truncated(self) -> bool:
        return self.total > len(self._buf)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _tail_text(buffer: TailBuffer, keep: int) -> str:
    """At most `keep` bytes from the end of `buffer`, with a marker when anything is missing."""
    tail = tail_bytes(buffer.data, keep)
    text = _text(tail)
    if len(tail) < buffer.total:
        dropped = buffer.total - len(tail)
        text = TRUNCATION_MARKER.format(dropped=dropped, total=buffer.total) + text
    return text


def _split(budget: int, first: int, second: int) -> tuple[int, int]:
    """Share `budget` bytes between two streams: each gets half, unused share goes to the other."""
    half = budget // 2
    if first <= half:
        return first, min(second, budget - first)
    if second <= half:
        return min(first, budget - second), second
    return half, budget - half


def fit_output(
    stdout: TailBuffer,
    stderr: TailBuffer,
    budget: int,
    render: Callable[[dict[str, object]], bytes],
) -> dict[str, object]:
    """Result fields whose rendered message fits in `budget` bytes (see module docstring)."""
    fields: dict[str, object] = {"stdout": _text(stdout.data), "stderr": _text(stderr.data)}
    if not stdout.truncated and not stderr.truncated and len(render(fields)) <= budget:
        return fields
    # Room left for the two texts = budget minus everything else in the message.
    skeleton: dict[str, object] = {
        "stdout": "",
        "stderr": "",
        "truncated": {"stdout": stdout.total, "stderr": stderr.total},
    }
    room = budget - len(render(skeleton)) - 2 * len(TRUNCATION_MARKER) - 40
    keep_out, keep_err = _split(max(room, 0), len(stdout.data), len(stderr.data))
    for _ in range(32):
        fields = {
            "stdout": _tail_text(stdout, keep_out),
            "stderr": _tail_text(stderr, keep_err),
            "truncated": {
                "stdout": stdout.total - min(keep_out, len(stdout.data)),
                "stderr": stderr.total - min(keep_err, len(stderr.data)),
            },
        }
        overshoot = len(render(fields)) - budget
        if overshoot <= 0:
            return fields
        # JSON escaping made the texts longer than their byte counts: cut the larger one more.
        if keep_out >= keep_err:
            keep_out = max(0, keep_out - max(overshoot, keep_out // 4))
        else:
            keep_err = max(0, keep_err - max(overshoot, keep_err // 4))
    return {"stdout": "", "stderr": "", "truncated": {"stdout": stdout.total,
                                                       "stderr": stderr.total}}
