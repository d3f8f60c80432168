"""TLS for the CLI: an untrusted certificate is refused clearly; knife's trusted_certs and
ssl_verify_mode :verify_none work. The server is a real HTTPS server on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pushd_knife.chefhttp import ChefHTTP
from pushd_knife.exitcodes import CliError


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(
            "127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "server.crt"
    key_path = directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        data = json.dumps([{"node_name": "n1", "availability": "available"}]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(directory)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/organizations/o", cert
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_untrusted_certificate_is_refused_with_advice(https: tuple[str, Path], pem: bytes) -> None:
    url, _ = https
    with pytest.raises(CliError) as err:
        ChefHTTP(url, "alice", pem, timeout=5).get_json("pushy/node_states")
    assert "TLS certificate not trusted" in err.value.message
    assert "trusted_certs" in err.value.message


def test_trusted_certs_dir_and_verify_none(https: tuple[str, Path], pem: bytes,
                                           tmp_path: Path) -> None:
    url, cert = https
    trusted = tmp_path / "trusted_certs"
    trusted.mkdir()
    (trusted / "127.0.0.1.crt").write_bytes(cert.read_bytes())
    expected = [{"node_name": "n1", "availability": "available"}]
    client = ChefHTTP(url, "alice", pem, trusted_certs_dir=trusted, timeout=5)
    assert client.get_json("pushy/node_states") == expected
    assert ChefHTTP(url, "alice", pem, ca_file=str(cert), timeout=5).get_json(
        "pushy/node_states") == expected
    assert ChefHTTP(url, "alice", pem, ssl_verify=False, timeout=5).get_json(
        "pushy/node_states") == expected
