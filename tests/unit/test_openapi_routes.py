"""docs/openapi.yaml names exactly the routes and methods the Falcon app serves.

The app is the real one (`create_app` with the real store module, local principal source and a
broker gateway whose broker never runs: building the app calls none of them); its routes are
read with falcon's own inspector, so a route added to pushd/api/app.py without a line in the
document (or a documented route the app lost) fails here."""

from __future__ import annotations

import re
from pathlib import Path

import falcon.inspect
import jsonschema_rs
import schemathesis
from schemathesis.specs.openapi.definitions import OPENAPI_31

from pushd import store
from pushd.api.app import create_app
from pushd.api.broker import BrokerGateway
from pushd.broker.control_client import BrokerClient
from pushd.identity import authz
from pushd.identity.local import LocalSource
from pushd.settings import Settings
from tests.support.openapi import HTTP_METHODS, OPENAPI_PATH, load_openapi

Route = tuple[str, str]  # (METHOD, path template)


def app_routes(tmp_path: Path) -> set[Route]:
    broker = BrokerGateway(BrokerClient(tmp_path, timeout=0.05).request)
    app = create_app(Settings.from_values({}), store, LocalSource(), broker, authz=authz)
    routes: set[Route] = set()
    for route in falcon.inspect.inspect_routes(app):
        # `internal` responders are falcon's own: the 405 for unserved methods, OPTIONS.
        for method in route.methods:
            if not method.internal:
                routes.add((method.method, route.path))
    return routes


def documented_routes(document: dict) -> set[Route]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_every_route_of_the_app_is_documented_and_nothing_else(tmp_path: Path) -> None:
    served = app_routes(tmp_path)
    documented = documented_routes(load_openapi())
    assert served, "falcon's inspector found no routes"
    missing = sorted(served - documented)
    assert not missing, f"routes missing from {OPENAPI_PATH}: {missing}"
    assert not documented - served, f"documented but not served: {sorted(documented - served)}"


def test_path_parameters_are_the_routes_fields() -> None:
    document = load_openapi()
    parameters = document["components"]["parameters"]
    for path, item in document["paths"].items():
        fields = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            declared = set()
            for param in [*item.get("parameters", []), *operation.get("parameters", [])]:
                if "$ref" in param:
                    param = parameters[param["$ref"].rsplit("/", 1)[1]]
                if param["in"] == "path":
                    assert param["required"] is True, (path, param["name"])
                    declared.add(param["name"])
            assert declared == fields, f"{method.upper()} {path}: path parameters {declared}"


def test_every_operation_has_an_id_and_json_errors() -> None:
    document = load_openapi()
    ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            ids.append(operation["operationId"])
            refusals = {code for code in operation["responses"] if code[0] in "45"}
            assert refusals, f"{method.upper()} {path} documents no refusal"
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_the_document_is_valid_openapi_3_1() -> None:
    document = load_openapi()
    assert document["openapi"].startswith("3.1.")
    # The official OpenAPI 3.1 meta-schema, as schemathesis ships it (its loader does not
    # validate a document by itself).
    validator = jsonschema_rs.Draft202012Validator(OPENAPI_31)
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}"
              for e in validator.iter_errors(document)]
    assert not errors, "\n".join(errors)
    schema = schemathesis.openapi.from_dict(document)
    operations = list(schema.get_all_operations())
    for result in operations:
        result.ok()  # raises on an operation schemathesis cannot use
    assert len(operations) == len(documented_routes(document))
