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
    LiveStream(capability)         what of one stream to send live (`output` messages) and when
        .take(buffer, now, final=False) -> (offset, text) | None
                                   the next chunk of `buffer` that is due, within the bounds
        .next_due(buffer, now) -> float | None   seconds until a chunk is due (None: nothing)
        .undo(offset, text)        the chunk just taken was not sent: take it again later

The stock client dropped both streams when stdout + stderr exceeded its limit; here the tail of
each stream is kept (the end of a log is where the error is), the smaller stream is kept whole if
it can be, and invalid UTF-8 is replaced rather than failing the JSON encoding.
"""

from __future__ import annotations

from collections.abc import Callable

from pushd.protocol.config import OutputCapability

# The marker is shared with the server, which cuts stored output the same way (output_max_bytes).
from pushd.protocol.output import TRUNCATION_MARKER, tail_bytes

__all__ = ["TRUNCATION_MARKER", "LiveStream", "TailBuffer", "fit_output"]


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
    def start(self) -> int:
        """Stream offset of the first byte still kept."""
        return self.total - len(self._buf)

    def slice(self, begin: int, end: int) -> bytes:
        """Bytes at stream offsets [begin, end) (both within what is kept)."""
        first = self.start
        return bytes(self._buf[begin - first : end - first])

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


def _is_continuation(byte: int) -> bool:
    return (byte & 0xC0) == 0x80


class LiveStream:
    """The live-output state of one stream of one job (see the module docstring).

    Bounds, from the server's advertised capability: a chunk when `chunk_bytes` wait or
    `interval` seconds after the previous one, whichever first; at most `max_bytes` sent in
    all (then nothing more: the result still carries the kept tail); at most `rate_bytes` a
    second (a token bucket holding one second). A backlog larger than one second of rate (or
    than the buffer still holds) is coalesced: the oldest unsent bytes are skipped and the
    next chunk's offset jumps, so memory stays the TailBuffer's and the broker sees at most
    `rate_bytes` a second whatever the command prints.
    """

    def __init__(self, capability: OutputCapability, now: float) -> None:
        self.cap = capability
        self.sent_to = 0  # stream offset up to which output was sent (or skipped)
        self.sent_bytes = 0
        self.skipped = 0
        self.last = now - capability.interval  # a first line goes out at once
        self._tokens = float(max(capability.rate_bytes, capability.chunk_bytes))
        self._refilled = now
        self._size = 0  # bytes of the chunk taken last (for undo)

    def _refill(self, now: float) -> None:
        burst = max(self.cap.rate_bytes, self.cap.chunk_bytes)
        self._tokens = min(burst, self._tokens + (now - self._refilled) * self.cap.rate_bytes)
        self._refilled = now

    def undo(self, offset: int, text: str) -> None:
        """The chunk `take` just returned (at `offset`) was not sent: it is due again at the
        next interval, from the same offset."""
        if self.sent_to - self._size != offset:
            return  # not the last chunk taken
        self.sent_to = offset
        self.sent_bytes -= self._size
        self._tokens += self._size
        self._size = 0

    def exhausted(self) -> bool:
        return self.sent_bytes >= self.cap.max_bytes

    def next_due(self, buffer: TailBuffer, now: float) -> float | None:
        if buffer.total <= self.sent_to or self.exhausted():
            return None
        if buffer.total - self.sent_to >= self.cap.chunk_bytes:
            return 0.0
        return max(0.0, self.last + self.cap.interval - now)

    def take(
        self, buffer: TailBuffer, now: float, *, final: bool = False
    ) -> tuple[int, str] | None:
        """The next chunk when one is due (`final`: the job ended, send what is left now)."""
        due = self.next_due(buffer, now)
        if due is None or (due > 0 and not final):
            return None
        self._refill(now)
        backlog_limit = min(buffer.total - buffer.start, max(self.cap.rate_bytes,
                                                             self.cap.chunk_bytes))
        if buffer.total - self.sent_to > backlog_limit:
            # Coalesce: keep only the newest chunk's worth; the offset tells the reader.
            skip_to = max(buffer.start, buffer.total - self.cap.chunk_bytes)
            while skip_to < buffer.total and _is_continuation(buffer.slice(skip_to,
                                                                           skip_to + 1)[0]):
                skip_to += 1
            self.skipped += skip_to - self.sent_to
            self.sent_to = skip_to
        size = min(buffer.total - self.sent_to, self.cap.chunk_bytes,
                   self.cap.max_bytes - self.sent_bytes, int(self._tokens))
        if size <= 0:
            return None
        end = self.sent_to + size
        data = buffer.slice(self.sent_to, end)
        if end < buffer.total:
            # Never split a UTF-8 sequence: its first bytes wait for the next chunk.
            lead = len(data) - 1
            while lead > 0 and len(data) - lead < 4 and _is_continuation(data[lead]):
                lead -= 1
            if lead > 0 and data[lead] >= 0xC0:
                need = 2 if data[lead] < 0xE0 else 3 if data[lead] < 0xF0 else 4
                if len(data) - lead < need:
                    data = data[:lead]
        offset = self.sent_to
        self._size = len(data)
        self.sent_to += len(data)
        self.sent_bytes += len(data)
        self._tokens -= len(data)
        self.last = now
        return offset, _text(data)
