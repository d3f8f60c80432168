"""Bounded output buffers and fitting output into one message."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from pushd_client.output import TailBuffer, fit_output


def render(fields: dict[str, object]) -> bytes:
    return json.dumps({"type": "succeeded", "job_id": "a" * 32, **fields}).encode()


def buffer(data: bytes, limit: int = 1 << 20) -> TailBuffer:
    buf = TailBuffer(limit)
    for i in range(0, len(data), 1000):
        buf.feed(data[i : i + 1000])
    return buf


def test_tail_buffer_keeps_the_end_and_counts_everything() -> None:
    buf = buffer(b"0123456789" * 10, limit=15)
    assert buf.total == 100
    assert buf.data == b"567890123456789"
    assert buf.truncated


def test_small_output_is_sent_whole_and_empty_streams_stay_present() -> None:
    fields = fit_output(buffer(b"hello\n"), buffer(b""), 1000, render)
    assert fields == {"stdout": "hello\n", "stderr": ""}


def test_large_output_keeps_the_tail_of_each_stream_with_counts() -> None:
    out = b"".join(b"out line %06d\n" % i for i in range(20000))
    err = b"".join(b"err line %06d\n" % i for i in range(5000))
    fields = fit_output(buffer(out), buffer(err), 8000, render)
    assert len(render(fields)) <= 8000
    dropped = fields["truncated"]
    assert isinstance(dropped, dict)
    assert 0 < dropped["stdout"] < len(out) and 0 < dropped["stderr"] < len(err)
    assert dropped["stdout"] + len(str(fields["stdout"]).split("\n", 1)[1]) == len(out)
    assert f"of {len(out)} bytes dropped" in str(fields["stdout"]).split("\n", 1)[0]
    assert str(fields["stdout"]).endswith("out line 019999\n")
    assert str(fields["stderr"]).endswith("err line 004999\n")
    assert str(fields["stdout"]).startswith("[push-jobs-client: output truncated")


def test_small_stream_kept_whole_when_the_other_is_cut() -> None:
    fields = fit_output(buffer(b"x" * 100000), buffer(b"short error\n"), 5000, render)
    assert fields["stderr"] == "short error\n"
    assert fields["truncated"] == {"stdout": 100000 - (len(str(fields["stdout"])) - len(
        str(fields["stdout"]).split("\n", 1)[0]) - 1), "stderr": 0}


def test_invalid_utf8_is_replaced() -> None:
    fields = fit_output(buffer(b"ok \xff\xfe end\n"), buffer(b"\xc3"), 1000, render)
    assert fields["stdout"] == "ok \ufffd\ufffd end\n"
    assert fields["stderr"] == "\ufffd"
    render(fields)


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=20000),
    st.binary(max_size=20000),
    st.integers(min_value=1200, max_value=30000),
)
def test_fitted_output_always_fits(out: bytes, err: bytes, budget: int) -> None:
    fields = fit_output(buffer(out), buffer(err), budget, render)
    assert len(render(fields)) <= budget
    assert isinstance(fields["stdout"], str) and isinstance(fields["stderr"], str)
