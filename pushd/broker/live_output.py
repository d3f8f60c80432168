"""The broker's bounds on live output (`output` messages from pushd clients).

    gate = OutputGate(max_bytes=None, rate_bytes=RATE_BYTES)
    gate.admit(job_id, node, channel, offset, data, now) -> bool
        True when the chunk is taken: its offset is at or past the end of the last chunk taken
        for that stream (a repeated or out-of-order chunk is dropped, so every chunk is on the
        feed once and in order), the stream has not yet had `max_bytes` (output_max_bytes)
        taken, and the node is within `rate_bytes` a second for the job (a token bucket
        holding one second, shared by both streams).
    gate.forget(job_id)                 the job ended
    gate.dropped -> int                 chunks refused so far

The client keeps to the bounds the server advertises (pushd.protocol.config.OutputCapability);
this is the server's own check, so a client that does not cannot flood the broker, the store or
the feeds. A dropped chunk loses nothing for good: the result message carries the output, and
its stored copy replaces the live one.
"""

from __future__ import annotations

from pushd.protocol.config import OutputCapability

# Twice what a pushd client sends per stream at most (OutputCapability.rate_bytes), per node.
RATE_BYTES = 4 * OutputCapability(max_bytes=0).rate_bytes


class _Stream:
    __slots__ = ("end", "taken")

    def __init__(self) -> None:
        self.end = 0
        self.taken = 0


class _NodeBudget:
    __slots__ = ("refilled", "streams", "tokens")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.refilled = now
        self.streams: dict[str, _Stream] = {}


class OutputGate:
    def __init__(self, *, max_bytes: int | None = None, rate_bytes: int = RATE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.rate_bytes = rate_bytes
        self.dropped = 0
        self._jobs: dict[str, dict[str, _NodeBudget]] = {}

    def admit(
        self, job_id: str, node: str, channel: str, offset: int, data: str, now: float
    ) -> bool:
        nodes = self._jobs.setdefault(job_id, {})
        budget = nodes.get(node)
        if budget is None:
            budget = nodes[node] = _NodeBudget(float(self.rate_bytes), now)
        stream = budget.streams.get(channel)
        if stream is None:
            stream = budget.streams[channel] = _Stream()
        size = len(data) if data.isascii() else len(data.encode("utf-8", "replace"))
        budget.tokens = min(float(self.rate_bytes),
                            budget.tokens + (now - budget.refilled) * self.rate_bytes)
        budget.refilled = now
        if (
            offset < stream.end
            or (self.max_bytes is not None and stream.taken + size > self.max_bytes)
            or size > budget.tokens
        ):
            self.dropped += 1
            return False
        budget.tokens -= size
        stream.taken += size
        stream.end = offset + size
        return True

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
