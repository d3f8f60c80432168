"""The live web dashboard, served by the API workers under /dashboard/.

    install_dashboard(app, ctx, *, authz, session_ttl)   adds the routes below to a falcon App

Routes:
    POST /organizations/{org}/pushy/dashboard/login   Chef-signed (read access, users only):
                                       ``{"url", "expires_in": 60}``, a one-time login URL
                                       (`push-jobs dashboard`)
    GET  /dashboard/login?token=T      consumes the token, sets the session cookie, 303 to
                                       /dashboard/
    GET  /dashboard/                   jobs list, newest first (``?status=``), live (org feed)
    GET  /dashboard/jobs/{job_id}      per-node states, counts, output, options, Abort (writers)
    POST /dashboard/jobs/{job_id}/abort   form POST with the session's CSRF token
    GET  /dashboard/nodes              availability of every node of the org
    POST /dashboard/logout             (CSRF token) ends the session
    GET  /dashboard/feed, /dashboard/feed/{job_id}   the org and job SSE feeds, cookie-authenticated
    GET  /dashboard/api/jobs/{job_id}  the job as JSON, for the script
    GET  /dashboard/static/{name}      dashboard.js, dashboard.css

There is no other way in than a login URL: no passwords. Sessions and login tokens live in the
database as hashes (pushd.store.dashboard), so every worker accepts them. Refusals render as an
HTML page (JSON under /dashboard/api and /dashboard/feed), with the security headers.
"""

from __future__ import annotations

import json
from typing import Any

import falcon

from pushd.api.context import ApiContext
from pushd.api.dashboard import html as h
from pushd.api.dashboard import pages
from pushd.api.dashboard.sessions import DashboardRefusal, NotLoggedIn, Sessions

ORG = "/organizations/{org}/pushy"
_JSON_PREFIXES = ("/dashboard/api/", "/dashboard/feed")


def _handle_refusal(
    req: falcon.Request, resp: falcon.Response, ex: DashboardRefusal, params: dict
) -> None:
    resp.stream = None
    if req.path.startswith(_JSON_PREFIXES):
        resp.status = ex.status
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps({"error": ex.message})
        h.secure_headers(resp)
        return
    title = "Not logged in" if isinstance(ex, NotLoggedIn) else "Refused"
    h.send_html(resp, h.message_page(title, ex.message), ex.status)


def install_dashboard(app: falcon.App, ctx: ApiContext, *, authz: Any, session_ttl: int) -> None:
    sessions = Sessions(ctx.store, ctx.principals, authz)
    app.add_error_handler(DashboardRefusal, _handle_refusal)
    app.add_route(f"{ORG}/dashboard/login", pages.DashboardLoginUrlResource(ctx))
    app.add_route("/dashboard/login", pages.LoginResource(ctx, session_ttl))
    app.add_route("/dashboard/logout", pages.LogoutResource(ctx, sessions))
    app.add_route("/dashboard", pages.JobsPage(ctx, sessions))
    app.add_route("/dashboard/jobs/{job_id}", pages.JobPage(ctx, sessions))
    app.add_route("/dashboard/jobs/{job_id}/abort", pages.AbortAction(ctx, sessions))
    app.add_route("/dashboard/nodes", pages.NodesPage(ctx, sessions))
    app.add_route("/dashboard/feed", pages.OrgFeed(ctx, sessions))
    app.add_route("/dashboard/feed/{job_id}", pages.JobFeed(ctx, sessions))
    app.add_route("/dashboard/api/jobs/{job_id}", pages.JobDataResource(ctx, sessions))
    app.add_route("/dashboard/static/{name}", pages.StaticResource())
