"""Job POST validation: every message of original-server.md 5.4 plus pushd's additions."""

from __future__ import annotations

import base64
import json

import pytest

from pushd.api import validation as v
from pushd.api.validation import JobValidationError, parse_job_request
from pushd.protocol import limits


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


def test_duplicate_nodes_are_accepted_once_each() -> None:
    # knife-push reads a 400 as a 1.x server (issue 12): duplicates run once instead.
    job = parse_job_request(body(nodes=["a", "b", "a", "b", "c"]))
    assert job.nodes == ["a", "b", "c"]
    assert job.quorum == 3


@pytest.mark.parametrize(
    ("quorum", "expected"),
    # Within the list as sent (knife's "100%" of ["a", "a", "b"] is 3): capped at the distinct
    # count; beyond it: kept, and the job fails quorum at once.
    [(3, 2), (2, 2), (1, 1), (0, 0), (4, 4)],
)
def test_quorum_with_duplicate_nodes(quorum: int, expected: int) -> None:
    assert parse_job_request(body(nodes=["a", "a", "b"], quorum=quorum)).quorum == expected


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


@pytest.mark.parametrize("value", [-5, 0.25, 0, 0.0, 2**31])
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


@pytest.mark.parametrize("env", [["A"], {"A": 1}, {"": "x"}, {"A": "x\x00"}])
def test_env_must_map_strings_to_strings(env: object) -> None:
    assert refused(body(env=env)) == v.ENV_INVALID


@pytest.mark.parametrize(
    "env",
    [
        {"A-B": "x"},
        {"1A": "x"},
        {f"V{i}": "" for i in range(limits.MAX_ENV_VARS + 1)},
        {"BIG": "x" * limits.MAX_ENV_BYTES},
    ],
    ids=["dash", "digit-first", "too-many", "too-big"],
)
def test_env_the_client_would_refuse_is_400(env: dict[str, str]) -> None:
    from pushd_client.environment import validate_job_env

    with pytest.raises(ValueError) as client_says:
        validate_job_env(env)
    assert refused(body(env=env)) == f"invalid environment value ({client_says.value})"


def test_env_at_the_client_limits_is_accepted() -> None:
    from pushd_client.environment import validate_job_env

    env = {f"V{i}": "" for i in range(limits.MAX_ENV_VARS - 1)}
    env["BIG"] = "x" * (limits.MAX_ENV_BYTES - sum(map(len, env)) - 3)
    assert validate_job_env(env) == env
    assert parse_job_request(body(env=env)).env == env


@pytest.mark.parametrize(
    "fields",
    [
        {"command": "\ud800"},
        {"nodes": ["ok", "x\udfff"]},
        {"dir": "/tmp/\ud800"},
        {"user": "\udc80"},
        {"file": "raw:\ud800"},
        {"env": {"A": "\ud800"}},
        {"env": {"\ud800": "x"}},
    ],
    ids=["command", "node", "dir", "user", "file", "env-value", "env-key"],
)
def test_lone_surrogates_are_400_in_every_field(fields: dict[str, object]) -> None:
    raw = json.dumps({"command": "x", "nodes": ["n1"], **fields}).encode()
    assert b"\\u" in raw  # sent as JSON escapes, as a hostile client would
    assert refused(raw) == v.text_invalid(next(iter(fields)))


@pytest.mark.parametrize("raw", [b'{"command": "x", "nodes": ["n"], "\\ud800": 1}',
                                 b'{"command": "x", "nodes": ["n"], "bogus": "\\ud800"}'])
def test_unknown_keys_stay_invalid_keys(raw: bytes) -> None:
    assert refused(raw) == v.INVALID_KEY


def test_surrogate_pairs_are_text() -> None:
    raw = b'{"command": "echo \\ud83d\\ude00", "nodes": ["n1"]}'
    assert parse_job_request(raw).command == "echo \U0001f600"


@pytest.mark.parametrize("directory", ["client", "..", "", "./x", "tmp/"])
def test_relative_dir_is_refused(directory: str) -> None:
    assert refused(body(dir=directory)) == v.DIR_INVALID


@pytest.mark.parametrize("directory", ["/", "/var/tmp", "C:\\chef", "c:/chef", "\\\\srv\\share"])
def test_absolute_dirs_are_accepted(directory: str) -> None:
    assert parse_job_request(body(dir=directory)).dir == directory


def test_file_limit_is_never_above_the_clients() -> None:
    limit = limits.MAX_JOB_FILE_BYTES
    at = "base64:" + base64.b64encode(b"x" * limit).decode()
    assert parse_job_request(body(file=at), max_file_size=10 * limit).file == at
    over = "base64:" + base64.b64encode(b"x" * (limit + 1)).decode()
    assert refused_with(body(file=over), max_file_size=10 * limit) == (
        f"invalid file size (must be <= {limit} bytes)"
    )


def test_a_commit_the_client_cannot_read_is_refused() -> None:
    # Control characters are 6 bytes each once JSON-escaped in the commit.
    command = "\x01" * (limits.MAX_SERVER_MESSAGE_BYTES // 6 + 1)
    assert refused(body(command=command)) == v.COMMIT_TOO_LARGE
    assert parse_job_request(body(command="\x01" * 1000)).command == "\x01" * 1000


def refused_with(raw: bytes, **kwargs: int) -> str:
    with pytest.raises(JobValidationError) as info:
        parse_job_request(raw, **kwargs)
    return info.value.message


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
