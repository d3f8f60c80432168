"""Server key files (created once, 0600, atomic), PEM loading, Z85 and Curve helpers."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest
import zmq
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pushd import keys
from pushd.errors import ConfigError
from pushd.keys import (
    curve_keypair,
    curve_public_from_secret,
    generate_client_keypair,
    load_or_create_server_keys,
    load_rsa_private_key,
    load_rsa_public_key,
    rsa_public_pem,
    write_secret_file,
    z85_decode,
    z85_encode,
)
from pushd.protocol import rsa_sign, rsa_verify


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_are_created_once_with_private_permissions(tmp_path: Path) -> None:
    directory = tmp_path / "etc" / "keys"
    server = load_or_create_server_keys(directory)
    assert mode(directory) == 0o700
    assert sorted(p.name for p in directory.iterdir()) == ["curve_secret.z85", "pushy_priv.pem"]
    for path in directory.iterdir():
        assert mode(path) == 0o600
    assert server.rsa_private.key_size == 2048
    assert server.rsa_public_pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert len(server.curve_public_z85) == len(server.curve_secret_z85) == 40
    assert zmq.curve_public(server.curve_secret_z85.encode()).decode() == server.curve_public_z85
    # The RSA key signs heartbeats that its advertised public key verifies.
    public = load_rsa_public_key(server.rsa_public_pem)
    assert rsa_verify(public, b"body", rsa_sign(server.rsa_private, b"body"))


def test_second_call_loads_the_same_keys_without_rewriting(tmp_path: Path) -> None:
    first = load_or_create_server_keys(tmp_path)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino)
              for p in tmp_path.iterdir()}
    second = load_or_create_server_keys(tmp_path)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino)
             for p in tmp_path.iterdir()}
    assert before == after
    assert second.rsa_public_pem == first.rsa_public_pem
    assert (second.curve_public_z85, second.curve_secret_z85) == (
        first.curve_public_z85, first.curve_secret_z85
    )


def test_a_missing_key_is_created_and_the_other_kept(tmp_path: Path) -> None:
    first = load_or_create_server_keys(tmp_path)
    (tmp_path / "curve_secret.z85").unlink()
    second = load_or_create_server_keys(tmp_path)
    assert second.rsa_public_pem == first.rsa_public_pem
    assert second.curve_secret_z85 != first.curve_secret_z85


def test_a_crash_while_writing_leaves_no_key_and_next_start_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def crash(fd: int) -> None:
        raise OSError(5, "simulated crash during fsync")

    monkeypatch.setattr(keys.os, "fsync", crash)
    with pytest.raises(OSError, match="simulated crash"):
        load_or_create_server_keys(tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither a half key nor a temp file

    monkeypatch.setattr(keys.os, "fsync", real_fsync)
    server = load_or_create_server_keys(tmp_path)
    assert load_rsa_private_key(tmp_path / "pushy_priv.pem").private_numbers() == (
        server.rsa_private.private_numbers()
    )


def test_a_stale_temp_file_from_an_earlier_crash_is_ignored(tmp_path: Path) -> None:
    (tmp_path / ".pushy_priv.pem.abc123.tmp").write_text("-----BEGIN PRIVATE KEY-----\nMII")
    server = load_or_create_server_keys(tmp_path)
    assert server.rsa_private.key_size == 2048


def _race(directory: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    server = load_or_create_server_keys(directory)
    queue.put((server.rsa_public_pem, server.curve_public_z85))


def test_processes_racing_to_create_keys_all_end_up_with_the_same_keys(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_race, args=(str(tmp_path), queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert len(set(results)) == 1
    on_disk = load_or_create_server_keys(tmp_path)
    assert results[0] == (on_disk.rsa_public_pem, on_disk.curve_public_z85)


def test_existing_key_files_with_loose_permissions_are_tightened(tmp_path: Path) -> None:
    load_or_create_server_keys(tmp_path)
    key_file = tmp_path / "pushy_priv.pem"
    key_file.chmod(0o644)
    tmp_path.chmod(0o755)
    load_or_create_server_keys(tmp_path)
    assert mode(key_file) == 0o600
    assert mode(tmp_path) == 0o700


@pytest.mark.parametrize("name", ["pushy_priv.pem", "curve_secret.z85"])
def test_a_corrupt_key_file_is_a_config_error_and_is_left_alone(
    tmp_path: Path, name: str
) -> None:
    load_or_create_server_keys(tmp_path)
    path = tmp_path / name
    path.write_bytes(b"corrupted")
    with pytest.raises(ConfigError) as caught:
        load_or_create_server_keys(tmp_path)
    assert caught.value.filename == str(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == b"corrupted"


def test_a_short_rsa_server_key_is_refused(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    write_secret_file(tmp_path / "pushy_priv.pem", weak.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    with pytest.raises(ConfigError, match="1024 bits"):
        load_or_create_server_keys(tmp_path)


def test_key_directory_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "keys"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError):
        load_or_create_server_keys(blocker)


# --------------------------------------------------------------------------- PEM helpers


@pytest.mark.parametrize(
    ("private_format", "header"),
    [
        (serialization.PrivateFormat.TraditionalOpenSSL, b"-----BEGIN RSA PRIVATE KEY-----"),
        (serialization.PrivateFormat.PKCS8, b"-----BEGIN PRIVATE KEY-----"),
    ],
)
def test_rsa_private_keys_load_from_pkcs1_and_pkcs8(
    tmp_path: Path, private_format: serialization.PrivateFormat, header: bytes
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, private_format,
                            serialization.NoEncryption())
    assert pem.startswith(header)
    path = tmp_path / "client.pem"
    path.write_bytes(pem)
    assert load_rsa_private_key(path).private_numbers() == key.private_numbers()


def _encrypted_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(b"secret"))


def _ec_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (b"", "not an unencrypted PEM private key"),
        (b"hello", "not an unencrypted PEM private key"),
        (_encrypted_pem(), "not an unencrypted PEM private key"),
        (_ec_pem(), "not an RSA private key"),
        (b"A" * 70000, "larger than"),
    ],
    # Stable ids: the keys above are generated at collection time (pytest-xdist workers must
    # collect identical test names).
    ids=["empty", "text", "encrypted", "ec", "oversized"],
)
def test_unusable_private_key_files_are_config_errors(
    tmp_path: Path, content: bytes, complaint: str
) -> None:
    path = tmp_path / "client.pem"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=complaint) as caught:
        load_rsa_private_key(path)
    assert caught.value.filename == str(path)


def test_missing_private_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read key file") as caught:
        load_rsa_private_key(tmp_path / "nope.pem")
    assert caught.value.filename == str(tmp_path / "nope.pem")


def test_public_key_loader_refuses_garbage() -> None:
    with pytest.raises(ConfigError, match="node1"):
        load_rsa_public_key("-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----\n",
                            source="node1")


def test_generated_client_keypair_is_chef_shaped(tmp_path: Path) -> None:
    private_pem, public_pem = generate_client_keypair()
    assert private_pem.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    assert public_pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    path = tmp_path / "client.pem"
    path.write_text(private_pem)
    private = load_rsa_private_key(path)
    assert rsa_public_pem(private) == public_pem
    assert load_rsa_public_key(public_pem).public_numbers() == (
        private.public_key().public_numbers()
    )


def test_write_secret_file_replaces_atomically_with_0600(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write_secret_file(path, b"one")
    inode = path.stat().st_ino
    write_secret_file(path, b"two")
    assert path.read_bytes() == b"two"
    assert mode(path) == 0o600
    assert path.stat().st_ino != inode  # a new file was renamed over the old one
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


# --------------------------------------------------------------------------- Z85 and Curve


def test_z85_matches_the_rfc32_example() -> None:
    raw = bytes([0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B])
    assert z85_encode(raw) == "HelloWorld"
    assert z85_decode("HelloWorld") == raw


@pytest.mark.parametrize("text", ["Hell~", "#####", "HelloWorl", "Héllo"])
def test_z85_decode_refuses_invalid_text(text: str) -> None:
    with pytest.raises(ValueError):
        z85_decode(text)


def test_z85_encode_needs_multiples_of_four_bytes() -> None:
    with pytest.raises(ValueError):
        z85_encode(b"abc")


def test_curve_keypair_and_public_from_secret_agree() -> None:
    public, secret = curve_keypair()
    assert len(z85_decode(public)) == len(z85_decode(secret)) == 32
    assert curve_public_from_secret(secret) == public
    assert curve_keypair() != (public, secret)
