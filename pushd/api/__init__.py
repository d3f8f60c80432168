"""The REST API and the SSE feeds of pushd (a Falcon WSGI app served by gunicorn + gevent).

Public API:

    pushd.api.app.create_app(settings, store, principals, broker, *, authz=None, events=None,
                             server_public_key_pem="") -> falcon.App
        The whole application with its dependencies injected (see that module for the routes).
    pushd.api.broker.BrokerGateway(call)     the broker's control ops as methods; BrokerDown
    pushd.api.events.EventHub(zmq, ctx, address)   wake-ups from the broker's events socket
    pushd.api.validation.parse_job_request(body, ...) -> JobRequest   (job POST rules, 5.4)
    pushd.api.formats: rfc1123, feed_timestamp, new_job_id, sse_event, SSE_KEEPALIVE

Modules: app (routes), context (settings the API reads), auth (X-Ops authentication and group
authorization), body (bounded body reads, 413), errors (JSON error bodies), documents (job
JSON), feeds (SSE streams over persisted events), events (wake-ups), rerun (the body and plan
of ``POST .../jobs/ID/rerun``), resources/ (one module per endpoint group).

Error bodies are always JSON with a reason: authentication/authorization refusals use the
original's ``{"error": ["message"]}``, everything else ``{"error": "message"}``.
"""
