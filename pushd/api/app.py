"""The Falcon application: routes, dependencies and error handling.

    create_app(settings, store, principals, broker, *, authz=None, events=None,
               server_public_key_pem="") -> falcon.App
        `settings`: a `pushd.settings.Settings` (anything with ``get(name)``).
        `store`: the `pushd.store` query API (module or object with its functions).
        `principals`: a `pushd.identity` PrincipalSource. `authz`: the module with
        ``can_read``/``can_write`` (default `pushd.identity.authz`).
        `broker`: a BrokerGateway (pushd.api.broker) over the broker's control socket.
        `events`: an EventHub on the broker's events socket (None: feeds poll the store).
        `server_public_key_pem`: the server's RSA public key, sent in node configs.
        `middleware`: extra falcon middleware (the server adds one store connection per request).

Routes (every other verb on them answers 405 JSON, unknown paths 404 JSON; a path with a NUL
character names nothing the store can hold and answers 404 JSON before anything is looked up):

    GET  /_status, /pushy/_status
    GET  /organizations/{org}/pushy/config/{node}
    GET  /organizations/{org}/pushy/jobs               POST (create)
    GET  /organizations/{org}/pushy/jobs/{job_id}
    POST /organizations/{org}/pushy/jobs/{job_id}/abort
    GET  /organizations/{org}/pushy/jobs/{job_id}/output/{node}/{channel}
    GET  /organizations/{org}/pushy/node_states
    GET  /organizations/{org}/pushy/node_states/{node}
    GET  /organizations/{org}/pushy/job_status_feed
    GET  /organizations/{org}/pushy/job_status_feed/{job_id}
    POST /organizations/{org}/pushy/dashboard/login, and /dashboard/... (pushd.api.dashboard)
"""

from __future__ import annotations

from typing import Any

import falcon

from pushd.api.auth import Authenticator
from pushd.api.context import ApiContext, ApiSettings
from pushd.api.dashboard import install_dashboard
from pushd.api.documents import job_document
from pushd.api.errors import ApiError, install_error_handlers
from pushd.api.events import EventHub
from pushd.api.feeds import FeedStreams
from pushd.api.metrics import RequestMetrics
from pushd.api.resources.config import ConfigResource
from pushd.api.resources.feeds import JobFeedResource, OrgFeedResource
from pushd.api.resources.jobs import (
    JobAbortResource,
    JobOutputResource,
    JobResource,
    JobsResource,
)
from pushd.api.resources.nodes import NodeStateResource, NodeStatesResource
from pushd.api.resources.status import StatusResource

ORG = "/organizations/{org}/pushy"


class RefuseNulPaths:
    """404 for a decoded path holding NUL (``%00``): no organization, job or node name can
    contain one (the store refuses it on every write), and PostgreSQL cannot even compare
    text with it, so such a lookup would otherwise fail as a 500."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if "\x00" in req.path:
            raise ApiError(404, "not found")


def create_app(
    settings: Any,
    store: Any,
    principals: Any,
    broker: Any,
    *,
    authz: Any = None,
    events: EventHub | None = None,
    server_public_key_pem: str = "",
    poll_interval: float = 2.0,
    middleware: list[Any] | None = None,
) -> falcon.App:
    if authz is None:
        from pushd.identity import authz as default_authz

        authz = default_authz
    api_settings = ApiSettings.from_settings(settings)
    feeds = FeedStreams(
        store,
        events,
        summary=job_document,
        keepalive=api_settings.keep_alive_time,
        poll_interval=poll_interval,
        org_retention=api_settings.org_feed_retention,
    )
    ctx = ApiContext(
        settings=api_settings,
        store=store,
        principals=principals,
        broker=broker,
        authenticator=Authenticator(principals, authz),
        feeds=feeds,
        server_public_key_pem=server_public_key_pem,
    )
    app = falcon.App(middleware=[RequestMetrics(), RefuseNulPaths(), *(middleware or [])])
    app.req_options.strip_url_path_trailing_slash = True
    # Bodies are read (and bounded) by the resources themselves; no media auto-parsing.
    app.req_options.auto_parse_form_urlencoded = False
    install_error_handlers(app)

    status = StatusResource(ctx)
    app.add_route("/_status", status)
    app.add_route("/pushy/_status", status)
    app.add_route(f"{ORG}/config/{{node}}", ConfigResource(ctx))
    app.add_route(f"{ORG}/jobs", JobsResource(ctx))
    app.add_route(f"{ORG}/jobs/{{job_id}}", JobResource(ctx))
    app.add_route(f"{ORG}/jobs/{{job_id}}/abort", JobAbortResource(ctx))
    app.add_route(f"{ORG}/jobs/{{job_id}}/output/{{node}}/{{channel}}", JobOutputResource(ctx))
    app.add_route(f"{ORG}/node_states", NodeStatesResource(ctx))
    app.add_route(f"{ORG}/node_states/{{node}}", NodeStateResource(ctx))
    app.add_route(f"{ORG}/job_status_feed", OrgFeedResource(ctx))
    app.add_route(f"{ORG}/job_status_feed/{{job_id}}", JobFeedResource(ctx))
    install_dashboard(
        app, ctx, authz=authz, session_ttl=int(settings.get("dashboard_session_ttl"))
    )
    return app
