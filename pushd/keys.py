"""Key material: the server's persistent RSA and Curve keypairs, RSA PEM helpers, Z85.

    ServerKeys(rsa_private, rsa_public_pem, curve_public_z85, curve_secret_z85)
        frozen dataclass; `rsa_public_pem` is SubjectPublicKeyInfo (``BEGIN PUBLIC KEY``) text
        as sent in the node config; the Curve keys are 40-character Z85 strings.
    load_or_create_server_keys(directory) -> ServerKeys
        Creates the directory (0700) and, only where missing, ``pushy_priv.pem`` (RSA-2048,
        PKCS#8 PEM) and ``curve_secret.z85``; later calls load them unchanged. Files are 0600
        and appear atomically (temp file, fsync, hard link into place), so a crash never
        leaves half a key and two processes racing to create a key both end up with the one
        that won. Group/other permission bits on existing files are removed. A file that
        exists but cannot be read or parsed raises ConfigError and is left untouched.
    load_rsa_private_key(path) -> RSAPrivateKey
        PKCS#1 (``BEGIN RSA PRIVATE KEY``) or PKCS#8 PEM; ConfigError naming the file otherwise.
    load_rsa_public_key(pem: str | bytes, *, source="public key") -> RSAPublicKey
        SubjectPublicKeyInfo or PKCS#1 public PEM, or a PEM certificate (what Chef accepts);
        ConfigError otherwise.
    rsa_public_pem(key: RSAPrivateKey | RSAPublicKey) -> str     SubjectPublicKeyInfo PEM
    rsa_private_pem(key: RSAPrivateKey) -> str                   PKCS#1 PEM (Chef's client.pem form)
    generate_rsa_key(bits=2048) -> RSAPrivateKey
    generate_client_keypair(bits=2048) -> tuple[str, str]        (private PKCS#1 PEM, public PEM)
    write_secret_file(path, data: bytes) -> None                  atomic 0600 create-or-replace
    z85_encode(raw: bytes) -> str; z85_decode(text: str) -> bytes
    curve_keypair() -> tuple[str, str]                            (public, secret) Z85
    curve_public_from_secret(secret_z85: str) -> str

pyzmq provides Z85 and Curve key generation; nothing here is hand-rolled crypto. PEM parsing
is `pushd.chefauth`'s (one loader for the whole project); this module adds file reading and
ConfigError.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.utils.z85
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from pushd import chefauth
from pushd.errors import ConfigError
from pushd.files import read_bounded

RSA_KEY_FILE = "pushy_priv.pem"
CURVE_SECRET_FILE = "curve_secret.z85"
RSA_BITS = 2048
# Far larger than any PEM we write; bounds what a misconfigured path can make us read.
_MAX_KEY_FILE = 64 * 1024


@dataclass(frozen=True)
class ServerKeys:
    """The server's long-lived keys."""

    rsa_private: RSAPrivateKey
    rsa_public_pem: str
    curve_public_z85: str
    curve_secret_z85: str


# --------------------------------------------------------------------------- RSA


def generate_rsa_key(bits: int = RSA_BITS) -> RSAPrivateKey:
    """A new RSA private key (public exponent 65537)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def rsa_public_pem(key: RSAPrivateKey | RSAPublicKey) -> str:
    """SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC KEY-----``), as the original sends."""
    public = key.public_key() if isinstance(key, RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def rsa_private_pem(key: RSAPrivateKey) -> str:
    """Unencrypted PKCS#1 PEM (``-----BEGIN RSA PRIVATE KEY-----``), like Chef's client.pem."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")


def generate_client_keypair(bits: int = RSA_BITS) -> tuple[str, str]:
    """(private PKCS#1 PEM, public SubjectPublicKeyInfo PEM) for a new node or user."""
    key = generate_rsa_key(bits)
    return rsa_private_pem(key), rsa_public_pem(key)


def _read_key_file(path: Path) -> bytes:
    return read_bounded(path, _MAX_KEY_FILE, "key file")


def load_rsa_private_key(path: str | os.PathLike[str]) -> RSAPrivateKey:
    """Load an unencrypted RSA private key (PKCS#1 or PKCS#8 PEM) from `path`."""
    file = Path(path)
    data = _read_key_file(file)
    try:
        return chefauth.load_private_key(data)
    except ValueError as exc:
        raise ConfigError(str(exc), filename=str(file)) from None


def load_rsa_public_key(pem: str | bytes, *, source: str = "public key") -> RSAPublicKey:
    """Load an RSA public key from PEM text (SubjectPublicKeyInfo, PKCS#1 or a certificate)."""
    try:
        return chefauth.load_public_key(pem)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


# --------------------------------------------------------------------------- Z85 and Curve


def z85_encode(raw: bytes) -> str:
    """Z85 text of `raw` (length must be a multiple of 4)."""
    if len(raw) % 4:
        raise ValueError("Z85 encodes multiples of 4 bytes")
    return zmq.utils.z85.encode(raw).decode("ascii")


def z85_decode(text: str) -> bytes:
    """Bytes of Z85 `text`; ValueError if it is not Z85."""
    if len(text) % 5 or not text.isascii():
        raise ValueError("Z85 text is a multiple of 5 ASCII characters")
    try:
        return zmq.utils.z85.decode(text.encode("ascii"))
    except (KeyError, ValueError, IndexError, OverflowError, struct.error) as exc:
        # pyzmq reports a character outside the alphabet as KeyError and a 5-character group
        # above 2**32 as struct.error.
        raise ValueError(f"not Z85 text: {exc}") from None


def curve_keypair() -> tuple[str, str]:
    """A new Curve25519 keypair as (public, secret) Z85 strings."""
    public, secret = zmq.curve_keypair()
    return public.decode("ascii"), secret.decode("ascii")


def curve_public_from_secret(secret_z85: str) -> str:
    """The Z85 public key belonging to Z85 secret key `secret_z85`."""
    return zmq.curve_public(secret_z85.encode("ascii")).decode("ascii")


# --------------------------------------------------------------------------- files


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(directory: Path, name: str, data: bytes) -> Path:
    fd, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)  # mkstemp already uses 0600; be explicit about what we rely on
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    return Path(temp_name)


def write_secret_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600, replacing any existing file."""
    target = Path(path)
    temp = _write_temp(target.parent, target.name, data)
    try:
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_directory(target.parent)


def _create_secret_file_once(path: Path, data: bytes) -> bool:
    """Atomically create `path` (0600) with `data` unless it exists. True if we created it."""
    temp = _write_temp(path.parent, path.name, data)
    try:
        os.link(temp, path)  # fails if another process got there first: never overwrite
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)
    _fsync_directory(path.parent)
    return True


def _tighten(path: Path, mode: int) -> None:
    try:
        current = path.stat().st_mode & 0o777
        if current & 0o077 and path.stat().st_uid == os.geteuid():
            os.chmod(path, current & ~0o077 & mode)
    except OSError as exc:
        raise ConfigError(f"cannot set permissions: {exc.strerror}", filename=str(path)) from None


def _prepare_directory(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create key directory: {exc.strerror}", filename=str(directory)
        ) from None
    if not directory.is_dir():
        raise ConfigError("key directory is not a directory", filename=str(directory))
    _tighten(directory, 0o700)


def _load_or_create_rsa(path: Path) -> RSAPrivateKey:
    if not path.exists():
        key = generate_rsa_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        if _create_secret_file_once(path, pem):
            return key
    _tighten(path, 0o600)
    key = load_rsa_private_key(path)
    if key.key_size < RSA_BITS:
        raise ConfigError(
            f"server RSA key has {key.key_size} bits; at least {RSA_BITS} required",
            filename=str(path),
        )
    return key


def _load_or_create_curve(path: Path) -> str:
    if not path.exists():
        _public, secret = curve_keypair()
        if _create_secret_file_once(path, secret.encode("ascii") + b"\n"):
            return secret
    _tighten(path, 0o600)
    text = _read_key_file(path).decode("ascii", "replace").strip()
    try:
        raw = z85_decode(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(
            "not a Curve secret key (40 Z85 characters)", filename=str(path), text=text[:60]
        )
    return text


def load_or_create_server_keys(directory: str | os.PathLike[str]) -> ServerKeys:
    """The server's keys under `directory`, created on first use (see the module docstring)."""
    base = Path(directory)
    _prepare_directory(base)
    rsa_key = _load_or_create_rsa(base / RSA_KEY_FILE)
    curve_secret = _load_or_create_curve(base / CURVE_SECRET_FILE)
    return ServerKeys(
        rsa_private=rsa_key,
        rsa_public_pem=rsa_public_pem(rsa_key),
        curve_public_z85=curve_public_from_secret(curve_secret),
        curve_secret_z85=curve_secret,
    )
