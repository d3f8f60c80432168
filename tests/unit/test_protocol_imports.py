"""The protocol library stays importable on a node: no server-only library, and no pyzmq."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_ONLY = {"falcon", "gunicorn", "gevent", "peewee", "psycopg"}


def imported_top_level_modules(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in json.loads(out.stdout)}


def test_protocol_imports_neither_server_libraries_nor_pyzmq() -> None:
    loaded = imported_top_level_modules("pushd.protocol")
    assert "pushd" in loaded  # the probe really imported the package
    assert not loaded & (SERVER_ONLY | {"zmq"})


def test_keys_imports_no_server_library() -> None:
    loaded = imported_top_level_modules("pushd.keys")
    assert "zmq" in loaded
    assert not loaded & SERVER_ONLY
