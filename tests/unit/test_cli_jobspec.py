"""`job start` options -> POST body: quorum, --file, --with-env (pushd_knife.jobspec)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pushd_knife.exitcodes import CliError
from pushd_knife.jobspec import (
    build_job_body,
    encode_file,
    parse_env,
    parse_quorum,
    unique_nodes,
)


@pytest.mark.parametrize(
    ("text", "count", "expected"),
    [
        ("100%", 3, 3),
        ("50%", 3, 2),  # ceil(1.5)
        ("34%", 3, 2),  # ceil(1.02)
        ("33%", 3, 1),  # ceil(0.99)
        ("1%", 1000, 10),
        ("0%", 5, 0),
        ("200%", 2, 4),  # knife passes it on; the server decides
        ("2", 5, 2),
        ("0", 5, 0),
        ("7", 2, 7),
    ],
)
def test_quorum_number_or_percent_rounded_up(text: str, count: int, expected: int) -> None:
    assert parse_quorum(text, count) == expected


@pytest.mark.parametrize("text", ["", "x", "50 %", "-1", "1.5", "%", "50%%", "1e3"])
def test_quorum_bad_format_has_knifes_message(text: str) -> None:
    with pytest.raises(CliError) as err:
        parse_quorum(text, 3)
    assert err.value.message == "Invalid Format please enter integer or percent"


def test_file_text_is_sent_raw(tmp_path: Path) -> None:
    path = tmp_path / "knife.rb"
    path.write_text("node_name 'alice'\n# é ünïcode\n", encoding="utf-8")
    assert encode_file(path) == "raw:node_name 'alice'\n# é ünïcode\n"


def test_file_binary_is_sent_base64(tmp_path: Path) -> None:
    data = bytes(range(256))
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    value = encode_file(path)
    assert value.startswith("base64:")
    assert base64.b64decode(value[len("base64:"):]) == data


def test_file_with_nul_is_base64_even_if_valid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "nul.txt"
    path.write_bytes(b"a\x00b")
    assert encode_file(path) == "base64:" + base64.b64encode(b"a\x00b").decode()


def test_file_missing_and_too_large(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="not found"):
        encode_file(tmp_path / "nope")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(CliError, match="larger than 100 bytes"):
        encode_file(big, max_bytes=100)
    with pytest.raises(CliError, match="is a directory"):
        encode_file(tmp_path)


def test_env_accepts_object_of_strings() -> None:
    assert parse_env('{"test": "foo", "B": ""}') == {"test": "foo", "B": ""}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"test": foo}', "--with-env is not valid JSON (Expecting value at line 1 column 10)"),
        ("{'a': 'b'}", "not valid JSON"),
        ("", "not valid JSON"),
        ('["a"]', "must be a JSON object"),
        ('"x"', "must be a JSON object"),
        ('{"n": 1}', "value of 'n' must be a string, not 1"),
        ('{"n": null}', "value of 'n' must be a string, not null"),
        ('{"a": "1", "a": "2"}', "has the variable 'a' twice"),
    ],
)
def test_env_errors_are_clear(text: str, fragment: str) -> None:
    with pytest.raises(CliError) as err:
        parse_env(text)
    assert fragment in err.value.message
    assert "\n" not in err.value.message


def test_body_matches_knife_push_v2_shape() -> None:
    body = build_job_body("chef", ["data-i-82685544"], quorum="100%", run_timeout=30000)
    assert body == {
        "command": "chef",
        "nodes": ["data-i-82685544"],
        "quorum": 1,
        "capture_output": False,
        "env": {},
        "run_timeout": 30000,
    }


def test_body_with_every_option() -> None:
    body = build_job_body(
        "print_execution_environment", ["n1", "n2", "n3"], quorum="50%", file="raw:x",
        capture=True, env={"test": "foo"}, directory="/tmp", user="daemon",
    )
    assert body == {
        "command": "print_execution_environment",
        "nodes": ["n1", "n2", "n3"],
        "quorum": 2,
        "file": "raw:x",
        "capture_output": True,
        "env": {"test": "foo"},
        "dir": "/tmp",
        "user": "daemon",
    }


def test_unique_nodes_keeps_order() -> None:
    assert unique_nodes(["b", "a", "b", "", "c", "a"]) == ["b", "a", "c"]
