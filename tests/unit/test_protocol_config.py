"""The node config document and the RSA-wrapped session key."""

from __future__ import annotations

import base64
import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pushd.errors import ProtocolError
from pushd.protocol import (
    build_config,
    decrypt_session_key,
    encrypt_session_key,
    new_session_key,
    parse_config,
)

CURVE_KEY = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"  # the ZeroMQ RFC 26 example server key


@pytest.fixture(scope="module")
def server_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def client_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture
def document(server_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    return build_config(
        host="push.example.com", heartbeat_port=10000, command_port=10002, interval=10.0,
        node="node1", organization="myorg", public_key_pem=public_pem(server_key),
        encoded_session_key="c2Vzc2lvbg==", lifetime=3600, max_message_skew=300,
        max_body_size=65536, incarnation_id="6f0c1a2b-0000-4000-8000-000000000001",
        curve_public_key=CURVE_KEY,
    )


def test_config_document_has_the_original_keys_nesting_and_order(
    document: dict[str, Any], server_key: rsa.RSAPrivateKey
) -> None:
    assert list(document) == ["type", "host", "push_jobs", "node", "organization",
                              "public_key", "curve_public_key", "encoded_session_key",
                              "lifetime", "max_message_skew", "max_body_size",
                              "incarnation_id"]
    assert document["type"] == "config"
    assert document["push_jobs"] == {
        "heartbeat": {
            "out_addr": "tcp://push.example.com:10000",
            "command_addr": "tcp://push.example.com:10002",
            "interval": 10.0,
            "offline_threshold": 3,
            "online_threshold": 2,
        }
    }
    assert document["encoded_session_key"] == {"method": "hmac_sha256", "key": "c2Vzc2lvbg=="}
    assert document["public_key"].startswith("-----BEGIN PUBLIC KEY-----\n")
    # Serialises the interval as a float, as the original (10.0, not 10).
    assert '"interval":10.0' in json.dumps(document, separators=(",", ":"))


def test_interval_in_milliseconds_becomes_float_seconds(server_key: rsa.RSAPrivateKey) -> None:
    doc = build_config(
        host="h", heartbeat_port=1, command_port=2, interval=1500 / 1000, node="n",
        organization="o", public_key_pem=public_pem(server_key), encoded_session_key="k",
        lifetime=1, max_message_skew=1, max_body_size=65536, incarnation_id="i",
    )
    assert doc["push_jobs"]["heartbeat"]["interval"] == 1.5
    assert "curve_public_key" not in doc  # a server offering no Curve omits the key


def test_ipv6_hosts_are_bracketed(server_key: rsa.RSAPrivateKey) -> None:
    doc = build_config(
        host="::1", heartbeat_port=10000, command_port=10002, interval=1, node="n",
        organization="o", public_key_pem=public_pem(server_key), encoded_session_key="k",
        lifetime=1, max_message_skew=1, max_body_size=65536, incarnation_id="i",
    )
    assert doc["push_jobs"]["heartbeat"]["out_addr"] == "tcp://[::1]:10000"
    assert parse_config(doc).command_addr == "tcp://[::1]:10002"


def test_parse_round_trips_from_dict_bytes_and_text(
    document: dict[str, Any], server_key: rsa.RSAPrivateKey
) -> None:
    for form in (document, json.dumps(document), json.dumps(document).encode()):
        config = parse_config(form)
        assert (config.host, config.out_addr, config.command_addr, config.interval) == (
            "push.example.com", "tcp://push.example.com:10000",
            "tcp://push.example.com:10002", 10.0,
        )
        assert (config.offline_threshold, config.online_threshold, config.node,
                config.organization, config.curve_public_key, config.session_key_method,
                config.encoded_session_key, config.lifetime, config.max_message_skew,
                config.max_body_size) == (
            3, 2, "node1", "myorg", CURVE_KEY, "hmac_sha256", "c2Vzc2lvbg==", 3600, 300,
            65536,
        )
        assert config.public_key.public_numbers() == server_key.public_key().public_numbers()


def test_config_from_an_older_server_parses(document: dict[str, Any]) -> None:
    del document["max_body_size"], document["curve_public_key"]
    document["push_jobs"]["heartbeat"]["interval"] = 10  # an integer is fine too
    config = parse_config(document)
    assert (config.max_body_size, config.curve_public_key, config.interval) == (None, None, 10.0)


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        doc = doc[part]
    if value is _DELETE:
        del doc[last]
    else:
        doc[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("type", "konfig"),
        ("host", ""),
        ("host", 5),
        ("push_jobs", _DELETE),
        ("push_jobs.heartbeat", []),
        ("push_jobs.heartbeat.out_addr", "http://h:1"),
        ("push_jobs.heartbeat.command_addr", _DELETE),
        ("push_jobs.heartbeat.interval", 0),
        ("push_jobs.heartbeat.interval", -1.0),
        ("push_jobs.heartbeat.interval", "10"),
        ("push_jobs.heartbeat.interval", True),
        ("push_jobs.heartbeat.interval", 1e9),
        ("push_jobs.heartbeat.offline_threshold", 0),
        ("push_jobs.heartbeat.online_threshold", 2.5),
        ("node", None),
        ("organization", _DELETE),
        ("public_key", "-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n"),
        ("public_key", _DELETE),
        ("curve_public_key", "short"),
        ("curve_public_key", "~" * 40),
        ("encoded_session_key", "abc"),
        ("encoded_session_key.method", "rsa"),
        ("encoded_session_key.key", ""),
        ("lifetime", -5),
        ("max_message_skew", "300"),
        ("max_body_size", 10),
        ("incarnation_id", _DELETE),
    ],
)
def test_malformed_configs_are_bad_config(
    document: dict[str, Any], path: str, value: Any
) -> None:
    broken = copy.deepcopy(document)
    _set(broken, path, value)
    with pytest.raises(ProtocolError) as caught:
        parse_config(broken)
    assert caught.value.reason == "bad_config"


@pytest.mark.parametrize("raw", [b"", b"[]", b"{", b"\xff", "x" * 70000, 42])
def test_unparseable_config_documents_are_bad_config(raw: Any) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_config(raw)
    assert caught.value.reason == "bad_config"


def test_a_non_rsa_public_key_is_refused(document: dict[str, Any]) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    document["public_key"] = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    with pytest.raises(ProtocolError, match="RSA"):
        parse_config(document)


# --------------------------------------------------------------------------- session keys


def test_session_key_round_trips(client_key: rsa.RSAPrivateKey) -> None:
    key = new_session_key()
    assert len(key) == 32
    text = encrypt_session_key(client_key.public_key(), key)
    assert len(base64.b64decode(text)) == 256
    assert decrypt_session_key(client_key, text) == key


def test_session_key_does_not_decrypt_with_another_key(
    client_key: rsa.RSAPrivateKey, server_key: rsa.RSAPrivateKey
) -> None:
    # OpenSSL's implicit rejection turns a wrong key into random bytes of a random length, so
    # one attempt in a few hundred yields 32 (wrong) bytes. Never the right key, and across
    # five attempts at least one is refused outright.
    refused = 0
    for _ in range(5):
        key = new_session_key()
        text = encrypt_session_key(client_key.public_key(), key)
        try:
            assert decrypt_session_key(server_key, text) != key
        except ProtocolError as caught:
            assert caught.reason == "bad_config"
            refused += 1
    assert refused >= 1


# Each of these fails deterministically: empty, wrong length, or a number above any modulus.
@pytest.mark.parametrize("text", ["", "!!!", "QUJD", base64.b64encode(b"\xff" * 256).decode()])
def test_garbage_session_keys_are_bad_config(client_key: rsa.RSAPrivateKey, text: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decrypt_session_key(client_key, text)
    assert caught.value.reason == "bad_config"


def test_encrypt_refuses_keys_that_are_not_32_bytes(client_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError):
        encrypt_session_key(client_key.public_key(), b"short")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_session_key_wrapping_is_compatible_with_openssl(
    client_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    pem = tmp_path / "client.pem"
    pem.write_bytes(client_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ))
    pub = tmp_path / "client_pub.pem"
    pub.write_text(public_pem(client_key))
    key = new_session_key()

    # Ours -> openssl (what the Ruby client's private_decrypt does).
    wrapped = tmp_path / "wrapped"
    wrapped.write_bytes(base64.b64decode(encrypt_session_key(client_key.public_key(), key)))
    out = subprocess.run(
        ["openssl", "pkeyutl", "-decrypt", "-inkey", str(pem), "-in", str(wrapped),
         "-pkeyopt", "rsa_padding_mode:pkcs1"],
        check=True, capture_output=True,
    ).stdout
    assert out == key

    # openssl -> ours (what the original server's public_encrypt produces).
    plain = tmp_path / "plain"
    plain.write_bytes(key)
    encrypted = subprocess.run(
        ["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", str(pub), "-in", str(plain),
         "-pkeyopt", "rsa_padding_mode:pkcs1"],
        check=True, capture_output=True,
    ).stdout
    assert decrypt_session_key(client_key, base64.b64encode(encrypted).decode()) == key
