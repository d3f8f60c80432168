"""CurveZMQ admission (ZAP, RFC 27) for the command port: only keys the API vouched for.

    grants = CurveGrants(window=60.0, clock=time.monotonic, state_file=None)
    grants.admit(raw_key: bytes, org_id, node)      an authenticated config request named this key
    grants.check(raw_key) -> str | None              the ZAP User-Id ("<org_id>:<node>") or None
    grants.restore(grace)                            after a restart: keys bound to nodes when the
                                                     broker stopped are admitted for `grace` s
    grants.save(force=False) -> bool / grants.dirty  persist bindings (state_file, 0600 JSON):
                                                     at most every `save_period` s (10) unless
                                                     forced (the broker forces it at shutdown);
                                                     True when the file was written
    grants.bound_count                               bindings held (what save writes)
    user_id_ref(user_id) -> (org_id, node)           parse the User-Id back

    ZAP_ENDPOINT = "inproc://zeromq.zap.01"
    answer_zap(frames, grants) -> list[bytes]        the reply to one ZAP request (REP socket)

A key is admitted for new connections during `window` seconds after the config request that
registered it (the original's 60 s). Connections already established stay. Every admitted
connection carries the User-Id, so the broker knows which (org, node) it speaks for and drops a
message naming another node.

Established bindings are written to `state_file` so a restarted broker can let the stock
client's DEALER (which reconnects by itself and only re-fetches its config once its job is
done) back in for `grace` seconds; without that, a running job could not be re-attached.
The file holds every binding (O(nodes), written atomically with fsync), so while admissions
arrive it is rewritten at most every `save_period` seconds, and at a clean shutdown: a broker
that is killed (not stopped) loses at most the last ~10 s of new bindings; those nodes are
refused at reconnection until they fetch their config again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from pushd.keys import write_secret_file, z85_decode, z85_encode

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
MAX_GRANTS = 1_000_000
SAVE_PERIOD = 10.0  # seconds: the most often the binding file is rewritten


def user_id_ref(user_id: str) -> tuple[str, str]:
    org_id, _, node = user_id.partition(":")
    return org_id, node


class CurveGrants:
    def __init__(
        self,
        window: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        state_file: Path | None = None,
        save_period: float = SAVE_PERIOD,
    ) -> None:
        self.window = window
        self.save_period = save_period
        self._saved_at: float | None = None
        self._clock = clock
        self._state_file = state_file
        # raw key -> (user id, admission deadline)
        self._grants: dict[bytes, tuple[str, float]] = {}
        # raw key -> user id of every key bound by a config request (persisted), and back
        self._bound: dict[bytes, str] = {}
        self._key_of: dict[str, bytes] = {}
        self.dirty = False

    def __len__(self) -> int:
        return len(self._grants)

    @property
    def bound_count(self) -> int:
        return len(self._bound)

    def admit(self, raw_key: bytes, org_id: str, node: str) -> None:
        if len(raw_key) != 32:
            raise ValueError("a Curve public key is 32 bytes")
        user_id = f"{org_id}:{node}"
        if len(self._grants) >= MAX_GRANTS:
            self.sweep()
        self._grants[raw_key] = (user_id, self._clock() + self.window)
        if self._bound.get(raw_key) != user_id:
            # A node has one live key: forget its older one.
            old = self._key_of.get(user_id)
            if old is not None:
                self._bound.pop(old, None)
            self._bound[raw_key] = user_id
            self._key_of[user_id] = raw_key
            self.dirty = True

    def check(self, raw_key: bytes) -> str | None:
        grant = self._grants.get(raw_key)
        if grant is None:
            return None
        user_id, deadline = grant
        if self._clock() > deadline:
            del self._grants[raw_key]
            return None
        return user_id

    def sweep(self) -> int:
        now = self._clock()
        expired = [key for key, (_, deadline) in self._grants.items() if deadline < now]
        for key in expired:
            del self._grants[key]
        return len(expired)

    def restore(self, grace: float) -> int:
        """Load persisted bindings; admit each for `grace` seconds."""
        if self._state_file is None or not self._state_file.exists():
            return 0
        try:
            stored = json.loads(self._state_file.read_text())
            bound = {z85_decode(key): str(user_id) for key, user_id in stored.items()}
        except (OSError, ValueError, TypeError, AttributeError) as err:
            log.warning("ignoring unreadable %s: %s", self._state_file, err)
            return 0
        deadline = self._clock() + grace
        for key, user_id in bound.items():
            if len(key) == 32:
                self._bound[key] = user_id
                self._key_of[user_id] = key
                self._grants.setdefault(key, (user_id, deadline))
        return len(bound)

    def save(self, *, force: bool = False) -> bool:
        if self._state_file is None or not (self.dirty or force):
            return False
        now = self._clock()
        if not force and self._saved_at is not None and now - self._saved_at < self.save_period:
            return False
        self._saved_at = now
        self.dirty = False
        data = {z85_encode(key): user_id for key, user_id in self._bound.items()}
        try:
            os.makedirs(self._state_file.parent, exist_ok=True)
            write_secret_file(self._state_file, json.dumps(data).encode())
        except OSError as err:
            log.warning("cannot save %s: %s", self._state_file, err)
            return False
        return True


def answer_zap(frames: list[bytes], grants: CurveGrants) -> list[bytes]:
    """Reply to one ZAP request: 200 with the User-Id for a granted Curve key, else 400."""
    if len(frames) < 6:
        log.warning("malformed ZAP request (%d frames)", len(frames))
        return [b"1.0", frames[1] if len(frames) > 1 else b"", b"500", b"Malformed", b"", b""]
    version, request_id, _domain, address, _identity, mechanism = frames[:6]
    credentials = frames[6:]
    if version != b"1.0":
        return [b"1.0", request_id, b"500", b"Bad version", b"", b""]
    if mechanism == b"CURVE" and len(credentials) == 1 and len(credentials[0]) == 32:
        user_id = grants.check(credentials[0])
        if user_id is not None:
            return [b"1.0", request_id, b"200", b"OK", user_id.encode(), b""]
    log.info("refused Curve handshake from %s", address.decode(errors="replace"))
    return [b"1.0", request_id, b"400", b"No such client", b"", b""]
