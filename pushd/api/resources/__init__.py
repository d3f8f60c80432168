"""Falcon resources of the REST API, one module per endpoint group (routes in pushd.api.app)."""
