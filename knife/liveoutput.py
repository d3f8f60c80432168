"""Printing a job's output while it runs, from the job feed's `output` events.

Public API:
    OutputPrinter(out, err, *, nodes=None, channels=("stdout",), prefix=False)
        .on_event(event)              an `output` event of the job feed (others are ignored)
        .finish(http, job_id, nodes)  after the job ended: print what the feed did not carry
                                      (a stock client's output, which arrives only with its
                                      result; bytes over the live bounds; a lost chunk) from
                                      `GET .../output/NODE/CHANNEL?offset=N`, then any
                                      unfinished last lines

Each (node, channel) stream is printed once, in order: a chunk's `offset` says where it starts
in the stream, so a chunk seen again after a reconnect is skipped and a gap (bytes the node or
the broker left out to stay within the bounds) shows as one `[... N bytes not streamed ...]`
line. stdout goes to `out`, stderr to `err` (binary streams). With `prefix` (more than one node
shown) only whole lines are printed, each as `node1: line`; without, bytes are written as they
come.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

from pushd_knife.chefhttp import ApiError, ChefHTTP, segment
from pushd_knife.exitcodes import CliError
from pushd_knife.sse import Event

# A partial line longer than this is printed as a line of its own (memory stays bounded).
MAX_PARTIAL_LINE = 64 * 1024


class _Stream:
    __slots__ = ("next", "partial")

    def __init__(self) -> None:
        self.next = 0  # stream offset of the next byte to print
        self.partial = b""  # an unfinished line (prefix mode only)


class OutputPrinter:
    def __init__(
        self,
        out: IO[bytes],
        err: IO[bytes],
        *,
        nodes: Iterable[str] | None = None,
        channels: tuple[str, ...] = ("stdout",),
        prefix: bool = False,
    ) -> None:
        self._targets = {"stdout": out, "stderr": err}
        self.nodes = None if nodes is None else set(nodes)
        self.channels = channels
        self.prefix = prefix
        self._streams: dict[tuple[str, str], _Stream] = {}

    def _stream(self, node: str, channel: str) -> _Stream:
        stream = self._streams.get((node, channel))
        if stream is None:
            stream = self._streams[(node, channel)] = _Stream()
        return stream

    def on_event(self, event: Event) -> None:
        if event.name != "output":
            return
        data = event.json()
        node, channel, offset, text = (data.get("node"), data.get("channel"),
                                       data.get("offset"), data.get("data"))
        if (not isinstance(node, str) or channel not in ("stdout", "stderr")
                or type(offset) is not int or not isinstance(text, str)):
            return
        if channel not in self.channels or (self.nodes is not None and node not in self.nodes):
            return
        self.add(node, channel, offset, text.encode("utf-8", "surrogateescape"))

    def add(self, node: str, channel: str, offset: int, data: bytes) -> None:
        """Print the part of `data` (starting at stream `offset`) not printed yet."""
        stream = self._stream(node, channel)
        if offset + len(data) <= stream.next:
            return  # seen already (a replay after a reconnect)
        if offset > stream.next:
            self._flush_partial(node, channel, stream)
            self._line(node, channel,
                       f"[... {offset - stream.next} bytes not streamed ...]".encode())
            stream.next = offset
        data = data[stream.next - offset:]
        stream.next += len(data)
        self._write(node, channel, stream, data)

    def _write(self, node: str, channel: str, stream: _Stream, data: bytes) -> None:
        target = self._targets[channel]
        if not self.prefix:
            target.write(data)
            target.flush()
            return
        text = stream.partial + data
        *lines, rest = text.split(b"\n")
        for line in lines:
            self._line(node, channel, line)
        if len(rest) > MAX_PARTIAL_LINE:
            self._line(node, channel, rest)
            rest = b""
        stream.partial = rest
        target.flush()

    def _line(self, node: str, channel: str, line: bytes) -> None:
        target = self._targets[channel]
        if self.prefix:
            target.write(node.encode("utf-8", "replace") + b": " + line + b"\n")
        else:
            target.write(line + b"\n")
        target.flush()

    def _flush_partial(self, node: str, channel: str, stream: _Stream) -> None:
        if stream.partial:
            self._line(node, channel, stream.partial)
            stream.partial = b""

    def finish(self, http: ChefHTTP, job_id: str, nodes: Iterable[str]) -> list[str]:
        """Print the rest of every stream from the stored output; returns the nodes that
        have none stored (the caller decides whether that is an error)."""
        missing = []
        for node in nodes:
            if self.nodes is not None and node not in self.nodes:
                continue
            for channel in self.channels:
                stream = self._stream(node, channel)
                rest = _fetch_from(http, job_id, node, channel, stream.next)
                if rest is None:
                    if channel == self.channels[0]:
                        missing.append(node)
                    continue
                data, start = rest
                self.add(node, channel, start, data)
                self._flush_partial(node, channel, stream)
        return missing


def _fetch_from(
    http: ChefHTTP, job_id: str, node: str, channel: str, offset: int
) -> tuple[bytes, int] | None:
    """(bytes, stream offset of the first) stored from `offset` on, None when there are none.

    A server without `?offset` (X-Output-Size absent) sends the whole stream; so does a pushd
    server whose stored tail starts after `offset` (a stream cut to output_max_bytes: its
    marker then shows what is missing, printed after a gap line)."""
    path = f"pushy/jobs/{segment(job_id)}/output/{segment(node)}/{channel}"
    try:
        response = http.request("GET", path, params={"offset": offset},
                                accept="application/octet-stream")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise CliError(f"cannot read the {channel} of {node}: {exc.message}") from None
    if _header_int(response.headers, "x-output-size") is None:
        return response.body, 0  # the whole stream
    return response.body, offset


def _header_int(headers: Any, name: str) -> int | None:
    value = headers.get(name) if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
