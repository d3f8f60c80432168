"""pushd.collector: a broker-like allocation pattern runs no full collection once it is applied.

Each case runs in a fresh interpreter (the collector's settings are process-wide).
"""

from __future__ import annotations

import json
import subprocess
import sys

# Bursts of containers that live until a batch of them is written and dropped at once (as
# the journal takes the transitions the loop made), over long-lived ones (as sessions and keys
# are): prints what each full collection found.
PATTERN = """
import gc, json, sys
if sys.argv[1] == "quiet":
    from pushd.collector import quiet_collector
    quiet_collector()
sessions = [{"ref": i, "state": "idle"} for i in range(20_000)]
full = []
gc.callbacks.append(lambda phase, info: full.append(info["collected"])
                    if phase == "stop" and info["generation"] == 2 else None)
batch = []
for _ in range(300):
    for i in range(2_000):
        batch.append({"node": i, "events": [{"name": "run_start", "data": {"node": i}}]})
    batch.clear()
print(json.dumps(full))
"""


def _full_collections(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", PATTERN, mode], capture_output=True,
                         text=True, check=True, timeout=120)
    return json.loads(out.stdout)


def test_the_default_collector_runs_full_collections_that_find_nothing() -> None:
    # The premise: with CPython's defaults this pattern pays for full collections.
    full = _full_collections("default")
    assert full and sum(full) == 0


def test_the_quiet_collector_runs_no_full_collection_for_the_same_allocations() -> None:
    assert _full_collections("quiet") == []


def test_cycles_are_still_collected() -> None:
    code = """
import gc, weakref
from pushd.collector import quiet_collector
quiet_collector()
class Node: pass
a, b = Node(), Node()
a.other, b.other = b, a
probe = weakref.ref(a)
del a, b
keep = [[] for _ in range(30_000)]  # enough new containers for a young collection
print(probe() is None)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "True"
