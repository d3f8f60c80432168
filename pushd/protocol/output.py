"""How a cut output stream looks, on the node and on the server (one definition for both).

    TRUNCATION_MARKER                 the line that starts a cut stream; format it with
                                      ``dropped`` and ``total`` (bytes)
    tail_bytes(data, keep) -> bytes   at most the last `keep` bytes of `data`, never starting in
                                      the middle of a UTF-8 sequence
    cap_text(text, max_bytes, total=None) -> (text, dropped, total)
        the server's cap on stored output (`output_max_bytes`): a stream whose UTF-8 bytes fit
        is returned as is with dropped 0; otherwise its last `max_bytes` bytes, preceded by
        TRUNCATION_MARKER naming what was dropped of `total` (the original size when a node
        already cut it; at least the text's own size), the bytes dropped and that total.
        U+DC80..U+DCFF (surrogateescape: undecodable bytes a node sent) count as the one byte
        they stand for.
    split_marker(data: bytes) -> (marker_length, dropped)
        a stored stream that starts with TRUNCATION_MARKER: the marker's length in bytes and
        the bytes it says were dropped; (0, 0) when it does not start with one

The client (`pushd_client.output`) keeps the tail of each stream for the same reason the server
does: the end of a log is where the error is. No server-only import here: nodes load this.
"""

from __future__ import annotations

import re

TRUNCATION_MARKER = "[push-jobs-client: output truncated, {dropped} of {total} bytes dropped]\n"


def tail_bytes(data: bytes, keep: int) -> bytes:
    """The last `keep` bytes of `data` (fewer when that would split a UTF-8 sequence)."""
    if keep <= 0:
        return b""
    tail = data[len(data) - keep :] if keep < len(data) else data
    start = 0
    while start < len(tail) and start < 3 and (tail[start] & 0xC0) == 0x80:
        start += 1
    return tail[start:]


def _encode(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return text.encode("utf-8", "replace")


def cap_text(text: str, max_bytes: int, total: int | None = None) -> tuple[str, int, int]:
    """`text` cut to its last `max_bytes` bytes behind the marker; bytes dropped; total."""
    data = _encode(text)
    if len(data) <= max_bytes:
        return text, 0, max(total or 0, len(data))
    kept = tail_bytes(data, max(0, max_bytes))
    whole = max(total or 0, len(data))
    dropped = whole - len(kept)
    marker = TRUNCATION_MARKER.format(dropped=dropped, total=whole)
    return marker + kept.decode("utf-8", "surrogateescape"), dropped, whole


_MARKER_RE = re.compile(
    re.escape(TRUNCATION_MARKER).replace(r"\{dropped\}", r"(\d+)").replace(r"\{total\}", r"(\d+)")
    .encode("ascii")
)


def split_marker(data: bytes) -> tuple[int, int]:
    """(length of a leading truncation marker, bytes it says were dropped), else (0, 0)."""
    match = _MARKER_RE.match(data)
    if match is None:
        return 0, 0
    return match.end(), int(match.group(1))
