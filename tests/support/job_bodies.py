"""Hypothesis strategies for job POST bodies: well-formed, malformed and hostile (lone
surrogates, relative dirs, env names a client refuses, duplicate nodes, quorum above the node
count), for the property tests of the API and of the API/client agreement (issue 12)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# Every code point, lone surrogates included (hypothesis leaves category Cs out by default).
ANY_CHAR = st.characters(exclude_categories=())
ANY_TEXT = st.text(alphabet=ANY_CHAR, max_size=12)
JUNK: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), st.just([]),
    st.just({}),
)

# Commands the scripted peer runs at once ("true"/"false") or refuses (anything else); never
# "hang" or "sleep N", which would keep a job running past its voting timeout.
COMMANDS = st.one_of(
    st.sampled_from(["true", "false", "chef-client", ""]),
    ANY_TEXT.filter(lambda c: c != "hang" and not c.startswith("sleep")),
    JUNK,
)
NODE_NAMES = st.one_of(st.sampled_from(["node1", "node2", "ghost"]), ANY_TEXT)


def hostile_fields(node_names: st.SearchStrategy[str] = NODE_NAMES) -> st.SearchStrategy[dict]:
    """Any value in any field: mostly refused."""
    optional = {
        "quorum": st.one_of(st.integers(-1, 5), JUNK),
        "run_timeout": st.one_of(st.integers(-1, 5), st.just(2**31), JUNK),
        "voting_timeout": st.one_of(st.integers(0, 3), JUNK),
        "user": st.one_of(st.sampled_from(["daemon", "u" * 33]), ANY_TEXT, JUNK),
        "dir": st.one_of(st.sampled_from(["/tmp", "client", "..", "C:\\chef"]), ANY_TEXT, JUNK),
        "env": st.one_of(
            st.dictionaries(st.one_of(st.sampled_from(["A", "B_1", "1X", "A-B"]), ANY_TEXT),
                            st.one_of(ANY_TEXT, JUNK), max_size=3),
            JUNK,
        ),
        "file": st.one_of(
            st.sampled_from(["raw:hello", "base64:aGk=", "base64:@@", "text"]),
            ANY_TEXT.map(lambda t: "raw:" + t),
            JUNK,
        ),
        "capture_output": st.one_of(st.booleans(), JUNK),
    }
    return st.fixed_dictionaries(
        {
            "command": COMMANDS,
            "nodes": st.one_of(st.lists(node_names, min_size=1, max_size=4), JUNK),
        },
        optional=optional,
    )


def plausible_fields() -> st.SearchStrategy[dict]:
    """Values of the right type, near the bounds: many accepted, some just over a bound."""
    text_or_surrogate = st.sampled_from(["x", "", "\u00fc", "\ud800", "a\udfffb"])
    optional = {
        "quorum": st.integers(0, 5),
        "run_timeout": st.integers(0, 5),
        "voting_timeout": st.integers(1, 3),
        "user": st.sampled_from(["daemon", "u" * 32, "u" * 33, "\udc80"]),
        "dir": st.sampled_from(["/tmp", "/", "client", "..", "", "C:\\chef", "/tmp/\ud800"]),
        "env": st.dictionaries(
            st.sampled_from(["A", "B_1", "_", "1X", "A-B", "\ud800"]), text_or_surrogate,
            max_size=3,
        ),
        "file": st.sampled_from(["raw:hello", "raw:\ud800", "base64:aGk=", "base64:@@"]),
        "capture_output": st.booleans(),
    }
    return st.fixed_dictionaries(
        {
            "command": st.one_of(st.sampled_from(["true", "false", "nope"]), text_or_surrogate),
            "nodes": st.lists(
                st.sampled_from(["node1", "node2", "ghost", "x\ud800"]), min_size=1, max_size=4
            ),
        },
        optional=optional,
    )


def encode(doc: dict) -> bytes:
    """JSON as a client sends it: non-ASCII (and lone surrogates) as \\u escapes."""
    return json.dumps(doc).encode("ascii")


# Plausible bodies twice: half the examples near the bounds, where the sides could disagree.
job_bodies: st.SearchStrategy[bytes] = st.one_of(
    plausible_fields().map(encode),
    plausible_fields().map(encode),
    hostile_fields().map(encode),
    st.binary(max_size=40),
)
