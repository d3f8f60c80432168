"""Job POST validation: every message of original-server.md 5.4 plus pushd's additions."""

from __future__ import annotations

import base64
import json

import pytest

from pushd.api import validation as v
from pushd.api.validation import JobValidationError, parse_job_request


def body(**fields: object) -> bytes:
    doc = {"command": "chef-client", "nodes": ["n1"]}
    doc.update(fields)
    return json.dumps({k: val for k, val in doc.items() if val is not ...}).encode()


def refused(raw: bytes) -> str:
    with pytest.raises(JobValidationError) as info:
        parse_job_request(raw)
    return info.value.message


def test_minimal_job_gets_the_original_defaults() -> None:
    job = parse_job_request(body(nodes=["a", "b", "c"]))
    assert job.command == "chef-client"
    assert job.nodes == ["a", "b", "c"]
    assert job.quorum == 3
    assert job.run_timeout == 3600
    assert job.options() == {}


def test_every_option_is_kept() -> None:
    job = parse_job_request(
        body(
            quorum=0,
            run_timeout=999,
            user="daemon",
            dir="/tmp",
            env={"A": "1"},
            file="raw:hello",
            capture_output=True,
            voting_timeout=5,
        )
    )
    assert job.quorum == 0 and job.run_timeout == 999
    assert job.options() == {
        "job_user": "daemon",
        "dir": "/tmp",
        "env": {"A": "1"},
        "job_file": "raw:hello",
        "capture": True,
        "voting_timeout": 5,
    }


def test_empty_command_is_accepted() -> None:
    assert parse_job_request(body(command="")).command == ""


@pytest.mark.parametrize("command", [..., [], {}, 0, False, None])
def test_bad_command(command: object) -> None:
    assert refused(body(command=command)) == "invalid command supplied"


@pytest.mark.parametrize("nodes", [..., [], {}, "n1", 0, None, [1], [None]])
def test_bad_nodes(nodes: object) -> None:
    assert refused(body(nodes=nodes)) == "at least one node must be supplied"


def test_duplicate_nodes_are_400_not_500() -> None:
    assert refused(body(nodes=["a", "b", "a"])) == "duplicate node names supplied"


@pytest.mark.parametrize("name", ["", "a/b", "x" * 256])
def test_unusable_node_names(name: str) -> None:
    assert refused(body(nodes=[name])) == v.NODE_NAME_INVALID


def test_unknown_key() -> None:
    assert refused(body(foo="bar")) == "invalid key supplied"


@pytest.mark.parametrize("value", ["1", True, None, [], {}])
def test_quorum_must_be_a_number(value: object) -> None:
    assert refused(body(quorum=value)) == v.QUORUM_TYPE


@pytest.mark.parametrize("value", [-1, 1.5, 2**31])
def test_quorum_must_be_a_non_negative_integer(value: object) -> None:
    assert refused(body(quorum=value)) == v.QUORUM_RANGE


def test_quorum_above_node_count_is_accepted_like_the_original() -> None:
    assert parse_job_request(body(quorum=999)).quorum == 999


def test_integral_float_is_an_integer() -> None:
    assert parse_job_request(body(run_timeout=2.0)).run_timeout == 2


@pytest.mark.parametrize("value", ["10", False, None])
def test_run_timeout_type(value: object) -> None:
    assert refused(body(run_timeout=value)) == v.RUN_TIMEOUT_TYPE


@pytest.mark.parametrize("value", [-5, 0.25])
def test_run_timeout_range(value: object) -> None:
    assert refused(body(run_timeout=value)) == v.RUN_TIMEOUT_RANGE


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_capture_output_must_be_boolean(value: object) -> None:
    assert refused(body(capture_output=value)) == (
        "invalid type supplied for capture_output (expected a boolean)"
    )


def test_env_duplicate_key() -> None:
    raw = b'{"command":"x","nodes":["n"],"env":{"A":"1","A":"2"}}'
    assert refused(raw) == "invalid environment value (duplicate key)"


def test_top_level_duplicate_key() -> None:
    assert refused(b'{"command":"x","command":"y","nodes":["n"]}') == v.DUPLICATE_KEY


@pytest.mark.parametrize("env", [["A"], {"A": 1}, {"": "x"}])
def test_env_must_map_strings_to_strings(env: object) -> None:
    assert refused(body(env=env)) == v.ENV_INVALID


@pytest.mark.parametrize("value", ["plain", "hex:00", 5])
def test_file_prefix(value: object) -> None:
    assert refused(body(file=value)) == (
        "invalid file contents (expected 'base64:...' or 'raw:...')"
    )


def test_file_base64_must_decode() -> None:
    assert refused(body(file="base64:@@@")) == v.FILE_BASE64


def test_file_size_limit_counts_decoded_bytes() -> None:
    ok = "base64:" + base64.b64encode(b"x" * 100_000).decode()
    assert parse_job_request(body(file=ok)).file == ok
    big = "base64:" + base64.b64encode(b"x" * 100_001).decode()
    assert refused(body(file=big)) == "invalid file size (must be <= 100000 bytes)"
    assert refused(body(file="raw:" + "y" * 100_001)) == (
        "invalid file size (must be <= 100000 bytes)"
    )


@pytest.mark.parametrize("user", ["", "u" * 33, 7])
def test_user_is_bounded(user: object) -> None:
    assert refused(body(user=user)) == v.USER_INVALID


@pytest.mark.parametrize("raw", [b"not json", b"\xff\xfe", b"", b"[" * 100_000])
def test_non_json_bodies(raw: bytes) -> None:
    assert refused(raw) == v.NOT_JSON


@pytest.mark.parametrize("raw", [b"[]", b'"x"', b"3", b"null"])
def test_body_must_be_an_object(raw: bytes) -> None:
    assert refused(raw) == v.NOT_OBJECT


def test_voting_timeout_must_be_positive() -> None:
    assert refused(body(voting_timeout=0)) == v.VOTING_TIMEOUT_RANGE
    assert refused(body(voting_timeout="5")) == v.VOTING_TIMEOUT_TYPE
