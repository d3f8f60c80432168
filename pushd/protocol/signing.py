"""Body signatures: HMAC-SHA256 (command channel) and RSA-2048/SHA-1 (server heartbeat).

    HMAC_SHA256 = "hmac_sha256", RSA2048_SHA1 = "rsa2048_sha1"
    hmac_sign(key: bytes, body: bytes) -> str
        base64(HMAC-SHA256(key, body)), standard alphabet, no line breaks.
    hmac_verify(key: bytes, body: bytes, signature: str) -> bool
        Constant-time comparison of the decoded signature with the expected MAC.
    rsa_sign(private_key: RSAPrivateKey, body: bytes) -> str
        base64 of the PKCS#1 v1.5 type-1 signature, *without* DigestInfo, of the 28-character
        text base64(SHA1(body)) -- what the original calls private-encrypting the hash string.
    rsa_verify(public_key: RSAPublicKey, body: bytes, signature: str) -> bool
    hash_string(body: bytes) -> bytes
        base64(SHA1(body)), the plaintext an rsa2048_sha1 signature covers.

Verification functions return False for any malformed signature (bad base64, wrong length);
they never raise. RSA work is done by `cryptography`, never by hand.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

HMAC_SHA256 = "hmac_sha256"
RSA2048_SHA1 = "rsa2048_sha1"
SIGNING_METHODS = frozenset({HMAC_SHA256, RSA2048_SHA1})

# Longest base64 signature we bother decoding: a 4096-bit RSA signature is 684 characters.
_MAX_SIGNATURE_TEXT = 1024


def _decode_signature(signature: str) -> bytes | None:
    if not isinstance(signature, str) or len(signature) > _MAX_SIGNATURE_TEXT:
        return None
    try:
        return base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return None


# By name: hmac.digest maps a constructor such as hashlib.sha256 to its OpenSSL name on every
# call (3.4 against 2.3 us per 300-byte message here), and every message is signed or checked.
_DIGEST = "sha256"


def hmac_sign(key: bytes, body: bytes) -> str:
    """base64(HMAC-SHA256(key, body))."""
    return base64.b64encode(hmac.digest(key, body, _DIGEST)).decode("ascii")


def hmac_verify(key: bytes, body: bytes, signature: str) -> bool:
    """True when `signature` is the HMAC-SHA256 of `body` under `key` (constant time)."""
    received = _decode_signature(signature)
    if received is None:
        return False
    return hmac.compare_digest(received, hmac.digest(key, body, _DIGEST))


def hash_string(body: bytes) -> bytes:
    """base64(SHA1(body)): Chef's v1.0 "hash string", the plaintext of an RSA signature."""
    return base64.b64encode(hashlib.sha1(body).digest())


def rsa_sign(private_key: RSAPrivateKey, body: bytes) -> str:
    """The original's rsa2048_sha1 signature of `body` (PKCS#1 v1.5, no DigestInfo)."""
    raw = private_key.sign(hash_string(body), padding.PKCS1v15(), asym_utils.NoDigestInfo())
    return base64.b64encode(raw).decode("ascii")


def rsa_verify(public_key: RSAPublicKey, body: bytes, signature: str) -> bool:
    """True when `signature` is a valid rsa2048_sha1 signature of `body` by `public_key`."""
    received = _decode_signature(signature)
    if received is None:
        return False
    try:
        # cryptography's hint for verify() omits NoDigestInfo, which it accepts (as sign() does).
        public_key.verify(
            received, hash_string(body), padding.PKCS1v15(), asym_utils.NoDigestInfo()  # type: ignore[arg-type]
        )
    except (InvalidSignature, ValueError):
        return False
    return True
