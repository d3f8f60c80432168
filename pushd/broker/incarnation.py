"""The broker's incarnation id: a new one only when the nodes must fetch their config again.

    resume(state_file, fingerprint, bindings_restored) -> Incarnation
        the id a stopped broker saved, when it can be kept; else a new one. The file is removed.
    Incarnation(id, kept, next_sequence)
    save(state_file, Incarnation(...), fingerprint, bindings_saved) -> bool
        at a clean stop, after the Curve bindings were saved

Why: a stock client re-fetches its config (a signed REST request, an RSA decryption on the
node, new sockets and a second Curve handshake) when a server heartbeat carries a new
incarnation id, after a random splay of at most one interval. After a restart that is the
whole fleet at once: with 5,000 nodes the config herd, not the reconnection, was the restart
storm (bench/RESULTS.md). The original made a new id per start because it lost everything a
node's session rests on; this broker keeps it: session keys in the store, its RSA and Curve
keys on disk, the nodes' Curve bindings in ``curve_clients.json`` (zap.py). So the id is kept
across a restart when all of that is as it was:

- the file is written only by a clean stop, after the bindings were written, and removed when
  it is read: a broker that was killed (bindings up to 10 s old) starts with a new id, and so
  does a second start after a failed one;
- the fingerprint of the config documents (`pushd.node_config`: host, ports, interval,
  thresholds, lifetime, limits, the RSA and Curve public keys) is unchanged: a changed setting
  reaches every node through the re-fetch the new id causes;
- every saved binding was read back (`bindings_restored` == the count saved): a node whose
  binding is missing would otherwise be refused by ZAP until its config's lifetime ran out.

A node that still cannot get in (its DEALER refused) is the stock client's own case: with no
command message within ~4 s of opening its sockets it re-fetches its config.
The server heartbeat's `sequence` goes on from where the stopped broker left it, so a client
that drops replayed heartbeats per incarnation id (pushd's client) keeps accepting them.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from pushd.keys import write_secret_file

log = logging.getLogger(__name__)

FILE_NAME = "incarnation.json"


@dataclass(frozen=True)
class Incarnation:
    id: str
    kept: bool = False
    next_sequence: int = 0


def fresh() -> Incarnation:
    return Incarnation(str(uuid.uuid4()))


def resume(state_file: Path, fingerprint: str, bindings_restored: int) -> Incarnation:
    try:
        text = state_file.read_text()
    except FileNotFoundError:
        return fresh()
    except OSError as err:
        log.warning("cannot read %s (%s): new incarnation id", state_file, err)
        return fresh()
    finally:
        # One start only: a later start after this one must find a file this one wrote.
        try:
            os.unlink(state_file)
        except OSError:
            pass
    try:
        saved = json.loads(text)
        saved_id, saved_fingerprint = saved["id"], saved["fingerprint"]
        sequence, bindings = saved["next_sequence"], saved["bindings"]
        if not (
            isinstance(saved_id, str)
            and 0 < len(saved_id) <= 255
            and saved_id.isascii()
            and type(sequence) is int
            and sequence >= 0
            and type(bindings) is int
        ):
            raise ValueError("unexpected values")
    except (ValueError, KeyError, TypeError) as err:
        log.warning("ignoring unreadable %s (%s): new incarnation id", state_file, err)
        return fresh()
    if saved_fingerprint != fingerprint:
        log.info(
            "node config changed since the last stop: new incarnation id "
            "(every node fetches its config again)"
        )
        return fresh()
    if bindings_restored != bindings:
        log.warning(
            "%d of %d Curve bindings read back: new incarnation id", bindings_restored, bindings
        )
        return fresh()
    return Incarnation(saved_id, kept=True, next_sequence=sequence)


def save(state_file: Path, incarnation: Incarnation, fingerprint: str, bindings_saved: int) -> bool:
    data = {
        "id": incarnation.id,
        "fingerprint": fingerprint,
        "next_sequence": incarnation.next_sequence,
        "bindings": bindings_saved,
    }
    try:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        write_secret_file(state_file, json.dumps(data).encode())
    except OSError as err:
        log.warning(
            "cannot save %s (%s): the next start makes a new incarnation id", state_file, err
        )
        return False
    return True
