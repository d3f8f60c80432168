"""The access log line: the client's address behind a trusted proxy, the requestor, and the same
text whichever way the atoms are computed (pushd's lean atoms for its own format)."""

from __future__ import annotations

import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from pushd.server.accesslog import ACCESS_LOG_FORMAT, ProxyAwareLogger


def _logger(fmt: str) -> ProxyAwareLogger:
    cfg = Config()
    cfg.set("access_log_format", fmt)
    cfg.set("forwarded_allow_ips", "127.0.0.1,::1")
    return ProxyAwareLogger(cfg)


def _request(headers: list[tuple[str, str]], peer: str) -> tuple[Any, Any, dict[str, Any], Any]:
    resp = SimpleNamespace(status="200 OK", sent=1234, headers=[("Content-Type", "x")])
    req = SimpleNamespace(headers=headers)
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/organizations/o/pushy/config/n1?ccpk=x",
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": peer, "PATH_INFO": "/x",
               "QUERY_STRING": "ccpk=x"}
    for name, value in headers:
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return resp, req, environ, datetime.timedelta(seconds=1, microseconds=2345)


def _line(logger: Logger, *request: Any) -> str:
    return ACCESS_LOG_FORMAT % logger.atoms_wrapper_class(logger.atoms(*request))


@pytest.mark.parametrize(("headers", "peer", "expected"), [
    ([("X-OPS-USERID", "n1"), ("X-FORWARDED-FOR", "10.1.2.3")], "127.0.0.1",
     '10.1.2.3 n1 "GET /organizations/o/pushy/config/n1?ccpk=x HTTP/1.1" 200 1234 1.002345s'),
    ([("X-FORWARDED-FOR", "10.1.2.3")], "10.9.9.9",  # an untrusted peer chooses nothing
     '10.9.9.9 - "GET /organizations/o/pushy/config/n1?ccpk=x HTTP/1.1" 200 1234 1.002345s'),
    ([("X-OPS-USERID", "a"), ("X-OPS-USERID", "b")], "::1",
     '::1 b "GET /organizations/o/pushy/config/n1?ccpk=x HTTP/1.1" 200 1234 1.002345s'),
])
def test_the_access_line_is_the_same_as_with_every_gunicorn_atom(
    headers: list[tuple[str, str]], peer: str, expected: str
) -> None:
    lean = _logger(ACCESS_LOG_FORMAT)
    assert _line(lean, *_request(headers, peer)) == expected
    # Another format gets gunicorn's full atoms (and still the proxy-aware address).
    full = _logger(ACCESS_LOG_FORMAT + " %(m)s")
    atoms = full.atoms(*_request(headers, peer))
    assert atoms["m"] == "GET" and atoms["h"] == expected.split()[0]
    assert "{content-type}o" in atoms
