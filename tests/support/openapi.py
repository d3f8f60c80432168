"""The REST API's OpenAPI document (docs/openapi.yaml) for the tests that keep it true.

    OPENAPI_PATH: Path
    load_openapi() -> dict          the document, parsed
    HTTP_METHODS: frozenset[str]    the keys of a path item that are operations
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def load_openapi() -> dict[str, Any]:
    with OPENAPI_PATH.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    assert isinstance(document, dict), f"{OPENAPI_PATH}: not a YAML mapping"
    return document
