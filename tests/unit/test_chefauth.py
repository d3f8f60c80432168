"""Chef request signing: published vectors, round trips and the pedant auth-header matrix.

The fixed vectors (key, request and expected headers) are the ones published in
mixlib-authentication's spec (spec/mixlib/authentication/mixlib_authentication_spec.rb), i.e.
what the Ruby signer used by chef-client, knife and the stock push-jobs client produces.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from pushd import chefauth
from pushd.chefauth import (
    WWW_AUTHENTICATE,
    authenticate_request,
    canonical_path,
    canonical_request,
    sign_request,
    verify_request,
)
from pushd.errors import AuthError

# --------------------------------------------------------------- mixlib-authentication vectors
SPEC_PRIVATE_KEY = """-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEA0ueqo76MXuP6XqZBILFziH/9AI7C6PaN5W0dSvkr9yInyGHS
z/IR1+4tqvP2qlfKVKI4CP6BFH251Ft9qMUBuAsnlAVQ1z0exDtIFFOyQCdR7iXm
jBIWMSS4buBwRQXwDK7id1OxtU23qVJv+xwEV0IzaaSJmaGLIbvRBD+qatfUuQJB
MU/04DdJIwvLtZBYdC2219m5dUBQaa4bimL+YN9EcsDzD9h9UxQo5ReK7b3cNMzJ
BKJWLzFBcJuePMzAnLFktr/RufX4wpXe6XJxoVPaHo72GorLkwnQ0HYMTY8rehT4
mDi1FI969LHCFFaFHSAaRnwdXaQkJmSfcxzCYQIDAQABAoIBAQCW3I4sKN5B9jOe
xq/pkeWBq4OvhW8Ys1yW0zFT8t6nHbB1XrwscQygd8gE9BPqj3e0iIEqtdphbPmj
VHqTYbC0FI6QDClifV7noTwTBjeIOlgZ0NSUN0/WgVzIOxUz2mZ2vBZUovKILPqG
TOi7J7RXMoySMdcXpP1f+PgvYNcnKsT72UcWaSXEV8/zo+Zm/qdGPVWwJonri5Mp
DVm5EQSENBiRyt028rU6ElXORNmoQpVjDVqZ1gipzXkifdjGyENw2rt4V/iKYD7V
5iqXOsvP6Cemf4gbrjunAgDG08S00kiUgvVWcdXW+dlsR2nCvH4DOEe3AYYh/aH8
DxEE7FbtAoGBAPcNO8fJ56mNw0ow4Qg38C+Zss/afhBOCfX4O/SZKv/roRn5+gRM
KRJYSVXNnsjPI1plzqR4OCyOrjAhtuvL4a0DinDzf1+fiztyNohwYsW1vYmqn3ti
EN0GhSgE7ppZjqvLQ3f3LUTxynhA0U+k9wflb4irIlViTUlCsOPkrNJDAoGBANqL
Q+vvuGSsmRLU/Cenjy+Mjj6+QENg51dz34o8JKuVKIPKU8pNnyeLa5fat0qD2MHm
OB9opeQOcw0dStodxr6DB3wi83bpjeU6BWUGITNiWEaZEBrQ0aiqNJJKrrHm8fAZ
9o4l4oHc4hI0kYVYYDuxtKuVJrzZiEapTwoOcYiLAoGBAI/EWbeIHZIj9zOjgjEA
LHvm25HtulLOtyk2jd1njQhlHNk7CW2azIPqcLLH99EwCYi/miNH+pijZ2aHGCXb
/bZrSxM0ADmrZKDxdB6uGCyp+GS2sBxjEyEsfCyvwhJ8b3Q100tqwiNO+d5FCglp
HICx2dgUjuRVUliBwOK93nx1AoGAUI8RhIEjOYkeDAESyhNMBr0LGjnLOosX+/as
qiotYkpjWuFULbibOFp+WMW41vDvD9qrSXir3fstkeIAW5KqVkO6mJnRoT3Knnra
zjiKOITCAZQeiaP8BO5o3pxE9TMqb9VCO3ffnPstIoTaN4syPg7tiGo8k1SklVeH
2S8lzq0CgYAKG2fljIYWQvGH628rp4ZcXS4hWmYohOxsnl1YrszbJ+hzR+IQOhGl
YlkUQYXhy9JixmUUKtH+NXkKX7Lyc8XYw5ETr7JBT3ifs+G7HruDjVG78EJVojbd
8uLA+DdQm5mg4vd1GTiSK65q/3EeoBlUaVor3HhLFki+i9qpT8CBsg==
-----END RSA PRIVATE KEY-----
"""
SPEC_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0ueqo76MXuP6XqZBILFz
iH/9AI7C6PaN5W0dSvkr9yInyGHSz/IR1+4tqvP2qlfKVKI4CP6BFH251Ft9qMUB
uAsnlAVQ1z0exDtIFFOyQCdR7iXmjBIWMSS4buBwRQXwDK7id1OxtU23qVJv+xwE
V0IzaaSJmaGLIbvRBD+qatfUuQJBMU/04DdJIwvLtZBYdC2219m5dUBQaa4bimL+
YN9EcsDzD9h9UxQo5ReK7b3cNMzJBKJWLzFBcJuePMzAnLFktr/RufX4wpXe6XJx
oVPaHo72GorLkwnQ0HYMTY8rehT4mDi1FI969LHCFFaFHSAaRnwdXaQkJmSfcxzC
YQIDAQAB
-----END PUBLIC KEY-----
"""
# Parsed once: cryptography validates an RSA key as it loads it (~0.1 s), which would otherwise
# dominate every signing test. The published-vector and key-file tests still sign from PEM text.
SPEC_KEY = chefauth.load_private_key(SPEC_PRIVATE_KEY)
SPEC_USER = "spec-user"
SPEC_BODY = b"Spec Body"
SPEC_PATH = "/organizations/clownco"
SPEC_TIMESTAMP = "2009-01-01T12:00:00Z"
SPEC_NOW = dt.datetime(2009, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
SPEC_HASHED_PATH = "YtBWDn1blGGuFIuKksdwXzHU9oE="
SPEC_SHA1_BODY = "DFteJZPVv6WKdQmMqZUQUumUyRs="
SPEC_SHA256_BODY = "hDlKNZhIhgso3Fs0S0pZwJ0xyBWtR1RBaeHs1DrzOho="

SPEC_CANONICAL = {
    "1.0": (
        f"Method:POST\nHashed Path:{SPEC_HASHED_PATH}\nX-Ops-Content-Hash:{SPEC_SHA1_BODY}\n"
        f"X-Ops-Timestamp:{SPEC_TIMESTAMP}\nX-Ops-UserId:{SPEC_USER}"
    ),
    "1.1": (
        f"Method:POST\nHashed Path:{SPEC_HASHED_PATH}\nX-Ops-Content-Hash:{SPEC_SHA1_BODY}\n"
        f"X-Ops-Timestamp:{SPEC_TIMESTAMP}\n"
        "X-Ops-UserId:" + base64.b64encode(hashlib.sha1(b"spec-user").digest()).decode()
    ),
    "1.3": (
        f"Method:POST\nPath:{SPEC_PATH}\nX-Ops-Content-Hash:{SPEC_SHA256_BODY}\n"
        f"X-Ops-Sign:version=1.3\nX-Ops-Timestamp:{SPEC_TIMESTAMP}\nX-Ops-UserId:{SPEC_USER}\n"
        "X-Ops-Server-API-Version:1"
    ),
}

SPEC_AUTHORIZATION_LINES = {
    "1.0": [
        "jVHrNniWzpbez/eGWjFnO6lINRIuKOg40ZTIQudcFe47Z9e/HvrszfVXlKG4",
        "NMzYZgyooSvU85qkIUmKuCqgG2AIlvYa2Q/2ctrMhoaHhLOCWWoqYNMaEqPc",
        "3tKHE+CfvP+WuPdWk4jv4wpIkAz6ZLxToxcGhXmZbXpk56YTmqgBW2cbbw4O",
        "IWPZDHSiPcw//AYNgW1CCDptt+UFuaFYbtqZegcBd2n/jzcWODA7zL4KWEUy",
        "9q4rlh/+1tBReg60QdsmDRsw/cdO1GZrKtuCwbuD4+nbRdVBKv72rqHX9cu0",
        "utju9jzczCyB+sSAQWrxSsXB/b8vV2qs0l4VD2ML+w==",
    ],
    "1.1": [
        "UfZD9dRz6rFu6LbP5Mo1oNHcWYxpNIcUfFCffJS1FQa0GtfU/vkt3/O5HuCM",
        "1wIFl/U0f5faH9EWpXWY5NwKR031Myxcabw4t4ZLO69CIh/3qx1XnjcZvt2w",
        "c2R9bx/43IWA/r8w8Q6decuu0f6ZlNheJeJhaYPI8piX/aH+uHBH8zTACZu8",
        "vMnl5MF3/OIlsZc8cemq6eKYstp8a8KYq9OmkB5IXIX6qVMJHA6fRvQEB/7j",
        "281Q7oI/O+lE8AmVyBbwruPb7Mp6s4839eYiOdjbDwFjYtbS3XgAjrHlaD7W",
        "FDlbAG7H8Dmvo+wBxmtNkszhzbBnEYtuwQqT8nM/8A==",
    ],
    "1.3": [
        "FZOmXAyOBAZQV/uw188iBljBJXOm+m8xQ/8KTGLkgGwZNcRFxk1m953XjE3W",
        "VGy1dFT76KeaNWmPCNtDmprfH2na5UZFtfLIKrPv7xm80V+lzEzTd9WBwsfP",
        "42dZ9N+V9I5SVfcL/lWrrlpdybfceJC5jOcP5tzfJXWUITwb6Z3Erg3DU3Uh",
        "H9h9E0qWlYGqmiNCVrBnpe6Si1gU/Jl+rXlRSNbLJ4GlArAPuL976iTYJTzE",
        "MmbLUIm3JRYi00Yb01IUCCKdI90vUq1HHNtlTEu93YZfQaJwRxXlGkCNwIJe",
        "fy49QzaCIEu1XiOx5Jn+4GmkrZch/RrK9VzQWXgs+w==",
    ],
}

SIGNING_VERSIONS = ("1.0", "1.1", "1.3")


def spec_keys(user_id: str) -> list[str] | None:
    return [SPEC_PUBLIC_KEY] if user_id == SPEC_USER else None


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --------------------------------------------------------------- published vectors


@pytest.mark.parametrize("version", SIGNING_VERSIONS)
def test_signing_reproduces_the_published_mixlib_vectors(version: str) -> None:
    headers = sign_request(
        "post", SPEC_PATH, SPEC_BODY, SPEC_USER, SPEC_PRIVATE_KEY,
        version=version, timestamp=SPEC_TIMESTAMP,
    )
    algorithm = "sha256" if version == "1.3" else "sha1"
    expected = {
        "X-Ops-Sign": f"algorithm={algorithm};version={version};",
        "X-Ops-UserId": SPEC_USER,
        "X-Ops-Timestamp": SPEC_TIMESTAMP,
        "X-Ops-Content-Hash": SPEC_SHA256_BODY if version == "1.3" else SPEC_SHA1_BODY,
    }
    for index, line in enumerate(SPEC_AUTHORIZATION_LINES[version], start=1):
        expected[f"X-Ops-Authorization-{index}"] = line
    if version == "1.3":
        expected["X-Ops-Server-API-Version"] = "1"
    assert headers == expected


@pytest.mark.parametrize("version", SIGNING_VERSIONS)
def test_canonical_request_matches_the_published_strings(version: str) -> None:
    hashed = SPEC_SHA256_BODY if version == "1.3" else SPEC_SHA1_BODY
    assert (
        canonical_request("post", SPEC_PATH, hashed, SPEC_TIMESTAMP, SPEC_USER, version, 1)
        == SPEC_CANONICAL[version]
    )


@pytest.mark.parametrize(
    ("sign_header", "version"),
    [
        ("version=1.0", "1.0"),  # what mixlib's own verifier spec sends for 1.0 clients
        ("algorithm=sha1;version=1.1;", "1.1"),
        ("algorithm=sha256;version=1.3;", "1.3"),
    ],
)
def test_published_wsgi_style_headers_verify(sign_header: str, version: str) -> None:
    environ = {
        "HTTP_HOST": "127.0.0.1",
        "HTTP_X_OPS_SIGN": sign_header,
        "HTTP_X_OPS_REQUESTID": "127.0.0.1 1258566194.85386",
        "HTTP_X_OPS_TIMESTAMP": SPEC_TIMESTAMP,
        "HTTP_X_OPS_CONTENT_HASH": SPEC_SHA256_BODY if version == "1.3" else SPEC_SHA1_BODY,
        "HTTP_X_OPS_USERID": SPEC_USER,
        "CONTENT_LENGTH": "9",
    }
    if version == "1.3":
        environ["HTTP_X_OPS_SERVER_API_VERSION"] = "1"
    for index, line in enumerate(SPEC_AUTHORIZATION_LINES[version], start=1):
        environ[f"HTTP_X_OPS_AUTHORIZATION_{index}"] = line
    assert verify_request("POST", SPEC_PATH, environ, SPEC_BODY, spec_keys, now=SPEC_NOW) == (
        SPEC_USER
    )


# --------------------------------------------------------------- round trips


@pytest.mark.parametrize("version", (*SIGNING_VERSIONS, "1.2"))
def test_sign_then_verify_round_trip(version: str) -> None:
    headers = sign_request("GET", "/organizations/o/pushy/jobs", b"", "alice", SPEC_KEY,
                           version=version)
    assert verify_request("GET", "/organizations/o/pushy/jobs", headers, b"",
                          lambda user: [SPEC_PUBLIC_KEY] if user == "alice" else None) == "alice"


def test_the_key_that_verified_is_returned_among_several(other_key: rsa.RSAPrivateKey) -> None:
    headers = sign_request("POST", "/x", b"{}", "bob", SPEC_KEY)
    keys = ["not a key at all", other_key.public_key(), SPEC_PUBLIC_KEY]
    verified = authenticate_request("POST", "/x", headers, b"{}", lambda _user: keys)
    assert verified.user_id == "bob"
    assert verified.public_key.public_numbers() == (
        serialization.load_pem_public_key(SPEC_PUBLIC_KEY.encode()).public_numbers()
    )


def test_path_is_signed_without_query_and_with_squeezed_slashes() -> None:
    assert canonical_path("//organizations///o/pushy/config/n1/?ccpk=abc&x=/") == (
        "/organizations/o/pushy/config/n1"
    )
    assert canonical_path("/") == "/"
    assert canonical_path("//") == "/"
    headers = sign_request("GET", "/organizations/o//pushy/config/n1/?ccpk=abc", b"", "n1",
                           SPEC_KEY)
    # The server sees the path without the query and possibly normalised differently.
    assert verify_request("GET", "/organizations/o/pushy/config/n1", headers, b"",
                          lambda _u: [SPEC_PUBLIC_KEY]) == "n1"


def test_header_names_are_case_insensitive_and_pairs_are_accepted() -> None:
    headers = sign_request("GET", "/p", b"", "carol", SPEC_KEY)
    lookup = lambda _u: [SPEC_PUBLIC_KEY]  # noqa: E731
    assert verify_request("GET", "/p", {k.upper(): v for k, v in headers.items()}, b"", lookup)
    assert verify_request("GET", "/p", {k.lower(): v for k, v in headers.items()}, b"", lookup)
    assert verify_request("GET", "/p", list(headers.items()), b"", lookup) == "carol"


def test_certificate_and_pkcs1_public_keys_are_accepted() -> None:
    private = SPEC_KEY
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spec-user")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2040, 1, 1, tzinfo=dt.UTC))
        .sign(private, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    pkcs1_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    )
    headers = sign_request("GET", "/p", b"", "dave", private, version="1.1")
    for pem in (cert_pem, pkcs1_pem.decode()):
        assert verify_request("GET", "/p", headers, b"", lambda _u, pem=pem: [pem]) == "dave"


@settings(max_examples=25, deadline=None)
@given(
    body=st.binary(max_size=2048),
    path=st.from_regex(r"/[a-z0-9_/.-]{0,60}", fullmatch=True),
    user=st.from_regex(r"[a-z][a-z0-9_.-]{0,40}", fullmatch=True),
    version=st.sampled_from(SIGNING_VERSIONS),
)
def test_any_body_path_and_user_round_trip(body: bytes, path: str, user: str, version: str) -> None:
    headers = sign_request("PUT", path, body, user, SPEC_KEY, version=version)
    assert all(len(v) <= 60 for k, v in headers.items() if k.startswith("X-Ops-Authorization"))
    assert verify_request("PUT", path, headers, body, lambda _u: [SPEC_PUBLIC_KEY]) == user
    if body:
        with pytest.raises(AuthError):
            verify_request("PUT", path, headers, body + b"x", lambda _u: [SPEC_PUBLIC_KEY])


def test_signer_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unsupported signing protocol version"):
        sign_request("GET", "/", b"", "u", SPEC_KEY, version="2.0")
    with pytest.raises(ValueError, match="too long"):
        sign_request("PUT", "/p", b"", "A" * 200, SPEC_KEY, version="1.0")
    # 1.1 hashes the user id, so the same long id signs fine.
    assert sign_request("PUT", "/p", b"", "A" * 200, SPEC_KEY, version="1.1")
    with pytest.raises(ValueError, match="server_api_version"):
        sign_request("GET", "/", b"", "u", SPEC_KEY, server_api_version="one")
    with pytest.raises(ValueError, match="private key"):
        sign_request("GET", "/", b"", "u", SPEC_PUBLIC_KEY)


def test_key_file_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "client.pem"
    bad.write_text("garbage\n")
    with pytest.raises(ValueError, match=str(bad)):
        chefauth.load_private_key_file(bad)
    good = tmp_path / "good.pem"
    good.write_text(SPEC_PRIVATE_KEY)
    assert chefauth.load_private_key_file(good).key_size == 2048


# --------------------------------------------------------------- the pedant auth-header matrix
NOW = dt.datetime(2026, 11, 24, 4, 0, 0, tzinfo=dt.UTC)
METHOD = "POST"
PATH = "/organizations/testorg/pushy/jobs"
BODY = b'{"command":"chef-client","nodes":["DONKEY"]}'


def signed(version: str = "1.1", **overrides: object) -> dict[str, str]:
    args: dict[str, object] = {
        "method": METHOD, "path": PATH, "body": BODY, "user_id": SPEC_USER, "timestamp": NOW,
    }
    args.update(overrides)
    return sign_request(
        args["method"], args["path"], args["body"], args["user_id"], SPEC_KEY,  # type: ignore[arg-type]
        version=version, timestamp=args["timestamp"],  # type: ignore[arg-type]
    )


def check(headers: dict[str, str], *, method: str = METHOD, path: str = PATH,
          body: bytes = BODY, now: dt.datetime = NOW) -> str:
    return verify_request(method, path, headers, body, spec_keys, now=now)


def refused(headers: dict[str, str], **kwargs: object) -> AuthError:
    with pytest.raises(AuthError) as caught:
        check(headers, **kwargs)  # type: ignore[arg-type]
    return caught.value


def without(headers: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in names}


def authorization_names(headers: dict[str, str]) -> list[str]:
    return [k for k in headers if k.startswith("X-Ops-Authorization-")]


BAD_SIGNATURE = f"Invalid signature for user or client '{SPEC_USER}'"


@pytest.mark.parametrize("version", SIGNING_VERSIONS)
def test_valid_request_succeeds(version: str) -> None:
    assert check(signed(version)) == SPEC_USER


@pytest.mark.parametrize("version", SIGNING_VERSIONS)
@pytest.mark.parametrize("empty", [False, True], ids=["missing", "empty"])
@pytest.mark.parametrize("header", ["X-Ops-Sign", "X-Ops-Timestamp", "X-Ops-Content-Hash",
                                    "X-Ops-UserId"])
def test_missing_or_empty_required_header_is_400(version: str, empty: bool, header: str) -> None:
    headers = signed(version)
    headers = {**headers, header: "  "} if empty else without(headers, header)
    error = refused(headers)
    assert (error.status, error.message) == (
        400, f"missing required authentication header(s) '{header}'"
    )


def test_missing_headers_are_listed_in_the_originals_order() -> None:
    error = refused({"Accept": "application/json"})
    assert error.status == 400
    assert error.message == (
        "missing required authentication header(s) 'X-Ops-UserId', 'X-Ops-Timestamp', "
        "'X-Ops-Sign', 'X-Ops-Content-Hash'"
    )


@pytest.mark.parametrize(
    "sign_header",
    ["version=2.0", "algorithm=sha1;version=1.4;", "algorithm=sha256;version=1.1;",
     "algorithm=md5;version=1.3;", "algorithm=sha1", "garbage"],
)
def test_unsupported_signing_version_is_400(sign_header: str) -> None:
    error = refused({**signed(), "X-Ops-Sign": sign_header})
    assert (error.status, error.message) == (400, "Unsupported authentication protocol version")


@pytest.mark.parametrize("stamp", ["2026-11-24 04:00:00", "yesterday", "2026-13-45T99:00:00Z",
                                   "1764000000", "2026-11-24T04:00:00Z" + "0" * 100])
def test_malformed_timestamp_is_401(stamp: str) -> None:
    error = refused({**signed(), "X-Ops-Timestamp": stamp})
    assert (error.status, error.message) == (401, "bad header(s) 'X-Ops-Timestamp'")


@pytest.mark.parametrize("version", SIGNING_VERSIONS)
@pytest.mark.parametrize("offset", [3600, -3600, 900])
def test_skewed_timestamp_is_401(version: str, offset: int) -> None:
    headers = signed(version, timestamp=NOW + dt.timedelta(seconds=offset))
    error = refused(headers)
    assert (error.status, error.message) == (
        401, f"Failed to authenticate as {SPEC_USER}. Synchronize the clock on your host."
    )


@pytest.mark.parametrize("version", SIGNING_VERSIONS)
@pytest.mark.parametrize("offset", [-30, -899, 899])
def test_timestamp_within_skew_succeeds(version: str, offset: int) -> None:
    assert check(signed(version, timestamp=NOW + dt.timedelta(seconds=offset))) == SPEC_USER


def test_max_skew_is_configurable() -> None:
    headers = signed(timestamp=NOW - dt.timedelta(seconds=30))
    with pytest.raises(AuthError) as caught:
        verify_request(METHOD, PATH, headers, BODY, spec_keys, now=NOW, max_skew=10)
    assert caught.value.status == 401


def test_timestamp_with_numeric_offset_is_understood() -> None:
    local = NOW.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()
    assert check(signed(timestamp=local)) == SPEC_USER


@pytest.mark.parametrize("version", SIGNING_VERSIONS)
@pytest.mark.parametrize("content_hash", ["not base64 !", "DFteJZPVv6WKdQmMqZUQUumUyRs=",
                                          "hDlKNZhIhgso3Fs0S0pZwJ0xyBWtR1RBaeHs1DrzOho="])
def test_malformed_or_mismatched_content_hash_is_401(version: str, content_hash: str) -> None:
    error = refused({**signed(version), "X-Ops-Content-Hash": content_hash})
    assert (error.status, error.message) == (401, BAD_SIGNATURE)
    assert error.headers == {"WWW-Authenticate": WWW_AUTHENTICATE}


@pytest.mark.parametrize("version", SIGNING_VERSIONS)
def test_missing_authorization_headers_is_401(version: str) -> None:
    headers = signed(version)
    error = refused(without(headers, *authorization_names(headers)))
    assert (error.status, error.message) == (401, BAD_SIGNATURE)
    assert error.headers["WWW-Authenticate"] == 'X-Ops-Sign version="1.0" version="1.1"'


@pytest.mark.parametrize("version", SIGNING_VERSIONS)
@pytest.mark.parametrize("garbage", ["epicfail", "", "!!!!", "AAAA"])
def test_garbled_authorization_header_is_401(version: str, garbage: str) -> None:
    error = refused({**signed(version), "X-Ops-Authorization-1": garbage})
    assert (error.status, error.message) == (401, BAD_SIGNATURE)


@pytest.mark.parametrize("version", SIGNING_VERSIONS)
@pytest.mark.parametrize("dropped", ["last", "middle"])
def test_partial_authorization_headers_is_401(version: str, dropped: str) -> None:
    headers = signed(version)
    names = authorization_names(headers)
    name = names[-1] if dropped == "last" else names[len(names) // 2]
    error = refused(without(headers, name))
    assert (error.status, error.message) == (401, BAD_SIGNATURE)


def test_oversized_authorization_is_refused_without_reading_it_all() -> None:
    headers = signed()
    flood = {f"X-Ops-Authorization-{i}": "A" * 60 for i in range(1, 500)}
    error = refused({**headers, **flood})
    assert (error.status, error.message) == (401, BAD_SIGNATURE)


@pytest.mark.parametrize("version", SIGNING_VERSIONS)
@pytest.mark.parametrize(
    "change",
    [{"method": "PUT"}, {"path": "/organizations/testorg/pushy/node_states"},
     {"body": b'{"command":"rm -rf /","nodes":["DONKEY"]}'}],
    ids=["method", "path", "body"],
)
def test_wrong_method_path_or_body_is_401(version: str, change: dict) -> None:
    error = refused(signed(version), **change)
    assert (error.status, error.message) == (401, BAD_SIGNATURE)


@pytest.mark.parametrize("version", SIGNING_VERSIONS)
def test_signature_from_another_key_is_401(version: str, other_key: rsa.RSAPrivateKey) -> None:
    headers = sign_request(METHOD, PATH, BODY, SPEC_USER, other_key, version=version,
                           timestamp=NOW)
    error = refused(headers)
    assert (error.status, error.message) == (401, BAD_SIGNATURE)


def test_signature_replayed_under_another_user_id_is_401() -> None:
    headers = {**signed("1.3"), "X-Ops-UserId": "pivotal"}
    with pytest.raises(AuthError) as caught:
        verify_request(METHOD, PATH, headers, BODY, lambda _u: [SPEC_PUBLIC_KEY], now=NOW)
    assert caught.value.message == "Invalid signature for user or client 'pivotal'"


def test_tampered_server_api_version_is_401() -> None:
    for value in ("2", "x"):
        error = refused({**signed("1.3"), "X-Ops-Server-API-Version": value})
        assert (error.status, error.message) == (401, BAD_SIGNATURE)


def test_version_13_without_api_version_header_signs_zero() -> None:
    headers = sign_request(METHOD, PATH, BODY, SPEC_USER, SPEC_KEY, timestamp=NOW,
                           server_api_version=0)
    assert check(without(headers, "X-Ops-Server-API-Version")) == SPEC_USER


def test_unknown_user_is_401() -> None:
    headers = sign_request(METHOD, PATH, BODY, "nobody", SPEC_KEY, timestamp=NOW)
    error = refused(headers)
    assert (error.status, error.message) == (
        401,
        "Failed to authenticate as 'nobody'. Ensure that your node_name and client key are "
        "correct.",
    )
    assert error.headers == {"WWW-Authenticate": WWW_AUTHENTICATE}


def test_principal_without_usable_keys_is_a_bad_signature() -> None:
    headers = signed()
    for keys in ([], ["-----BEGIN PUBLIC KEY-----\nbroken\n-----END PUBLIC KEY-----\n"]):
        with pytest.raises(AuthError) as caught:
            verify_request(METHOD, PATH, headers, BODY, lambda _u, k=keys: k, now=NOW)
        assert caught.value.message == BAD_SIGNATURE


def test_lookup_errors_propagate_unchanged() -> None:
    class Unreachable(Exception):
        pass

    def lookup(_user: str) -> list[str]:
        raise Unreachable("chef server down")

    with pytest.raises(Unreachable):
        verify_request(METHOD, PATH, signed(), BODY, lookup, now=NOW)


def test_checks_run_in_the_originals_order() -> None:
    # A skewed clock is reported before an unsupported version or an unknown user.
    headers = {**signed(timestamp=NOW - dt.timedelta(hours=2)), "X-Ops-Sign": "version=9"}
    assert refused(headers).message.endswith("Synchronize the clock on your host.")
    # An unsupported version is reported before the principal is looked up.
    looked_up: list[str] = []
    with pytest.raises(AuthError) as caught:
        verify_request(METHOD, PATH, {**signed(), "X-Ops-Sign": "version=9"}, BODY,
                       lambda u: looked_up.append(u) or None, now=NOW)
    assert caught.value.status == 400
    assert looked_up == []
