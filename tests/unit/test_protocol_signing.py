"""Body signatures: fixed HMAC vectors, RSA hash-string signatures, and an openssl cross-check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pushd.protocol.signing import hash_string, hmac_sign, hmac_verify, rsa_sign, rsa_verify

# RFC 4231 test case 2 (HMAC-SHA256 of "what do ya want for nothing?" under key "Jefe").
RFC4231_KEY = b"Jefe"
RFC4231_DATA = b"what do ya want for nothing?"
RFC4231_MAC_HEX = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"

# A 32-byte session key and a message body, signature computed with
# `openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef -binary | base64`.
SESSION_KEY = b"0123456789abcdef0123456789abcdef"
ABORT_BODY = b'{"type":"abort"}'
ABORT_SIGNATURE = "CSEBJmJhntpJprundz2i0wAOLjYSnQasLO2cUycZDFY="
# `openssl dgst -sha1 -binary | base64` of ABORT_BODY.
ABORT_HASH_STRING = b"VLgSWAoPaBQLXKFAIADqAZpJF0c="


@pytest.fixture(scope="module")
def server_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def flip_bit(signature: str, bit: int = 0) -> str:
    raw = bytearray(base64.b64decode(signature))
    raw[bit // 8] ^= 1 << (bit % 8)
    return base64.b64encode(bytes(raw)).decode()


def test_hmac_matches_rfc4231_vector() -> None:
    expected = base64.b64encode(bytes.fromhex(RFC4231_MAC_HEX)).decode()
    assert hmac_sign(RFC4231_KEY, RFC4231_DATA) == expected


def test_hmac_of_a_body_matches_an_independently_computed_signature() -> None:
    independent = base64.b64encode(
        hmac.new(SESSION_KEY, ABORT_BODY, hashlib.sha256).digest()
    ).decode()
    assert independent == ABORT_SIGNATURE
    assert hmac_sign(SESSION_KEY, ABORT_BODY) == ABORT_SIGNATURE


def test_known_hmac_signature_verifies_and_any_flipped_bit_does_not() -> None:
    assert hmac_verify(SESSION_KEY, ABORT_BODY, ABORT_SIGNATURE)
    for bit in (0, 7, 100, 255):
        assert not hmac_verify(SESSION_KEY, ABORT_BODY, flip_bit(ABORT_SIGNATURE, bit))
    assert not hmac_verify(SESSION_KEY, ABORT_BODY + b" ", ABORT_SIGNATURE)
    assert not hmac_verify(b"x" * 32, ABORT_BODY, ABORT_SIGNATURE)


@pytest.mark.parametrize(
    "signature", ["", "not base64!", "CSEB", ABORT_SIGNATURE[:-4], "A" * 5000, "=" * 44]
)
def test_malformed_hmac_signatures_are_false_not_errors(signature: str) -> None:
    assert hmac_verify(SESSION_KEY, ABORT_BODY, signature) is False


def test_hash_string_is_base64_sha1() -> None:
    assert hash_string(ABORT_BODY) == ABORT_HASH_STRING
    assert len(hash_string(b"anything")) == 28


def test_rsa_signature_is_pkcs1_type1_over_the_hash_string(
    server_key: rsa.RSAPrivateKey,
) -> None:
    signature = rsa_sign(server_key, ABORT_BODY)
    recovered = server_key.public_key().recover_data_from_signature(
        base64.b64decode(signature), padding.PKCS1v15(), None
    )
    assert recovered == ABORT_HASH_STRING


def test_rsa_signature_verifies_with_its_key_only(
    server_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    signature = rsa_sign(server_key, ABORT_BODY)
    assert rsa_verify(server_key.public_key(), ABORT_BODY, signature)
    assert not rsa_verify(other_key.public_key(), ABORT_BODY, signature)
    assert not rsa_verify(server_key.public_key(), ABORT_BODY + b"x", signature)
    assert not rsa_verify(server_key.public_key(), ABORT_BODY, flip_bit(signature, 2000))
    assert not rsa_verify(server_key.public_key(), ABORT_BODY, "garbage")
    assert not rsa_verify(server_key.public_key(), ABORT_BODY, signature[:40])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_rsa_signature_is_byte_compatible_with_openssl(
    server_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pub_file = tmp_path / "pub.pem"
    pub_file.write_bytes(
        server_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    hash_file = tmp_path / "hash"
    hash_file.write_bytes(ABORT_HASH_STRING)
    # What the original does: private-encrypt the hash string with PKCS#1 v1.5, no digest.
    openssl_signature = subprocess.run(
        ["openssl", "pkeyutl", "-sign", "-inkey", str(key_file), "-in", str(hash_file),
         "-pkeyopt", "rsa_padding_mode:pkcs1"],
        check=True, capture_output=True,
    ).stdout
    assert base64.b64encode(openssl_signature).decode() == rsa_sign(server_key, ABORT_BODY)

    # And the reverse: openssl recovers the hash string from our signature.
    sig_file = tmp_path / "sig"
    sig_file.write_bytes(base64.b64decode(rsa_sign(server_key, ABORT_BODY)))
    recovered = subprocess.run(
        ["openssl", "pkeyutl", "-verifyrecover", "-pubin", "-inkey", str(pub_file),
         "-in", str(sig_file), "-pkeyopt", "rsa_padding_mode:pkcs1"],
        check=True, capture_output=True,
    ).stdout
    assert recovered == ABORT_HASH_STRING
