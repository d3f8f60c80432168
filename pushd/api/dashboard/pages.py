"""The dashboard's resources (routes in pushd/api/dashboard/__init__.py).

HTML pages are complete without the script: the script only keeps them current. Every page
and refusal carries the security headers of `html.secure_headers`.
"""

from __future__ import annotations

import json
from importlib import resources as package_files
from typing import Any
from urllib.parse import parse_qs

import falcon

from pushd.api.body import read_body
from pushd.api.broker import BrokerDown, BrokerRefused
from pushd.api.context import ApiContext
from pushd.api.dashboard import html as h
from pushd.api.dashboard.sessions import (
    LOGIN_TTL,
    DashboardRefusal,
    DashboardUnavailable,
    NoAccess,
    NotLoggedIn,
    Sessions,
    Viewer,
    clear_cookie,
    mint_login,
    open_session,
    set_cookie,
)
from pushd.api.dashboard.views import JOB_STATUSES, job_detail, job_row
from pushd.api.errors import ApiError
from pushd.api.resources.common import JOB_ID_MAX, authorized, org_id_of, send_json
from pushd.api.resources.feeds import EVENT_STREAM
from pushd.states import JobStatus
from pushd.store.times import utcnow

JOBS_SHOWN = 100
STATIC_TYPES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


def _base_url(req: falcon.Request) -> str:
    """The server as the caller reached it (X-Forwarded-Proto, Host), like job URIs."""
    scheme = (req.get_header("X-Forwarded-Proto") or req.scheme or "http").split(",")[0].strip()
    host = req.get_header("Host") or req.host
    return f"{scheme}://{host}"


def _find_job(ctx: ApiContext, viewer: Viewer, job_id: str) -> Any:
    job = ctx.store.get_job(viewer.org_id, job_id) if 0 < len(job_id) <= JOB_ID_MAX else None
    if job is None:
        raise DashboardRefusal(f"job {job_id} not found")
    return job


def _node_counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{h.e(name)} {count}" for name, count in counts.items()) or "-"


class DashboardLoginUrlResource:
    """``POST /organizations/ORG/pushy/dashboard/login`` (signed): a one-time login URL."""

    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        body = read_body(req, self._ctx.settings.max_request_body)
        requestor = authorized(self._ctx, req, org, "read", body)
        if requestor.is_client:
            raise ApiError(403, "the dashboard is for users; clients cannot log in", listed=True)
        token = mint_login(self._ctx.store, org_id_of(requestor), requestor.org.name,
                           requestor.name)
        url = f"{_base_url(req)}/dashboard/login?token={token}"
        send_json(resp, {"url": url, "expires_in": LOGIN_TTL}, 201)


class LoginResource:
    """``GET /dashboard/login?token=...``: the one way in."""

    def __init__(self, ctx: ApiContext, ttl: int) -> None:
        self._ctx = ctx
        self._ttl = ttl

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        opened = open_session(self._ctx.store, req.get_param("token") or "", self._ttl)
        if opened is None:
            raise NotLoggedIn(
                "this login link is invalid, expired or already used: run `push-jobs dashboard`"
            )
        set_cookie(resp, req, opened[0], self._ttl)
        h.secure_headers(resp)
        # 303 to the jobs list, so the token leaves the address bar and the history.
        resp.status = 303
        resp.set_header("Location", "/dashboard/")


class LogoutResource:
    def __init__(self, ctx: ApiContext, sessions: Sessions) -> None:
        self._ctx = ctx
        self._sessions = sessions

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        viewer = self._sessions.viewer(req)
        self._sessions.check_csrf(viewer, _form(req, self._ctx).get("csrf_token"))
        self._ctx.store.delete_session(viewer.cookie_hash)
        clear_cookie(resp, req)
        h.send_html(resp, h.message_page("Logged out", "You are logged out."))


def _form(req: falcon.Request, ctx: ApiContext) -> dict[str, str]:
    raw = read_body(req, ctx.settings.max_request_body)
    try:
        fields = parse_qs(raw.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0] for name, values in fields.items() if values}


class JobsPage:
    """``GET /dashboard/`` (``?status=``): the org's jobs, newest first."""

    def __init__(self, ctx: ApiContext, sessions: Sessions) -> None:
        self._ctx = ctx
        self._sessions = sessions

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        viewer = self._sessions.viewer(req)
        wanted = req.get_param("status") or ""
        if wanted and wanted not in JOB_STATUSES:
            raise DashboardRefusal(f"unknown job status {wanted!r}")
        status = JobStatus.from_wire(wanted) if wanted else None
        jobs, _ = self._ctx.store.list_jobs(viewer.org_id, limit=JOBS_SHOWN, status=status)
        counts = self._ctx.store.node_counts(viewer.org_id, [job.id for job in jobs])
        now = utcnow()
        rows = "".join(_job_tr(job_row(job, counts.get(job.id, {}), now)) for job in jobs)
        options = "".join(
            f'<option value="{h.e(name)}"{" selected" if name == wanted else ""}>'
            f"{h.e(name or 'any status')}</option>"
            for name in ("", *JOB_STATUSES)
        )
        body = (
            '<form method="get" action="/dashboard/" class="filter">'
            f'<label>Status <select name="status" id="status-filter">{options}</select></label>'
            ' <button type="submit">Filter</button></form>'
            '<p class="live" id="live">Live updates need JavaScript; reload to refresh.</p>'
            '<table id="jobs"><thead><tr><th>Job</th><th>Command</th><th>Requested by</th>'
            "<th>Status</th><th>Nodes</th><th>Age</th><th>Duration</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
        h.send_html(resp, h.page("Jobs", body, viewer=viewer, page_name="jobs",
                                 data={"status": wanted}))


def _job_tr(row: dict[str, Any]) -> str:
    return (
        f'<tr data-job="{h.e(row["id"])}" data-active="{int(row["active"])}">'
        f'<td class="id"><a href="/dashboard/jobs/{h.e(row["id"])}">{h.e(row["id"])}</a></td>'
        f'<td class="command">{h.e(row["command"])}</td>'
        f'<td class="requester">{h.e(row["requester"])}</td>'
        f'<td class="status status-{h.e(row["status"])}">{h.e(row["status"])}</td>'
        f'<td class="counts">{_node_counts_text(row["counts"])}</td>'
        f'<td class="age">{h.e(row["age"])}</td>'
        f'<td class="duration">{h.e(row["duration"])}</td></tr>'
    )


class JobPage:
    """``GET /dashboard/jobs/ID``: nodes, counts, output, options and the Abort button."""

    def __init__(self, ctx: ApiContext, sessions: Sessions) -> None:
        self._ctx = ctx
        self._sessions = sessions

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        viewer = self._sessions.viewer(req)
        job = _find_job(self._ctx, viewer, job_id)
        doc = job_detail(self._ctx.store, viewer.org_id, job, utcnow())
        abort = ""
        if viewer.can_write and doc["active"]:
            abort = (
                f'<form method="post" action="/dashboard/jobs/{h.e(job.id)}/abort" id="abort">'
                f'<input type="hidden" name="csrf_token" value="{h.e(viewer.csrf_token)}">'
                '<button type="submit" id="abort-button">Abort</button></form>'
            )
        body = (
            f'<dl class="job"><dt>Id</dt><dd id="job-id">{h.e(job.id)}</dd>'
            f'<dt>Command</dt><dd id="job-command">{h.e(doc["command"])}</dd>'
            f'<dt>Requested by</dt><dd>{h.e(doc["requester"])}</dd>'
            f'<dt>Status</dt><dd id="job-status" class="status status-{h.e(doc["status"])}">'
            f'{h.e(doc["status"])}</dd>'
            f'<dt>Nodes</dt><dd id="job-counts">{_node_counts_text(doc["counts"])}</dd>'
            f'<dt>Age</dt><dd id="job-age">{h.e(doc["age"])}</dd>'
            f'<dt>Duration</dt><dd id="job-duration">{h.e(doc["duration"])}</dd></dl>'
            f"{abort}"
            '<p class="live" id="live">Live updates need JavaScript; reload to refresh.</p>'
            "<h3>Nodes</h3>"
            '<table id="nodes"><thead><tr><th>Node</th><th>Status</th><th>Reason</th></tr>'
            "</thead><tbody>"
            + "".join(
                f'<tr data-node="{h.e(n["name"])}"><td class="node">{h.e(n["name"])}</td>'
                f'<td class="status status-{h.e(n["status"])}">{h.e(n["status"])}</td>'
                f'<td class="reason">{h.e(n["reason"])}</td></tr>'
                for n in doc["nodes"]
            )
            + "</tbody></table><h3>Options</h3>"
            + _options_dl(doc["options"])
            + '<h3>Output</h3><div id="outputs">'
            + _outputs_html(doc["outputs"], bool(doc["options"]["capture_output"]))
            + "</div>"
        )
        h.send_html(resp, h.page(f"Job {job.id}", body, viewer=viewer, page_name="job",
                                 data={"job": job.id, "active": str(int(doc["active"]))}))


def _options_dl(options: dict[str, Any]) -> str:
    items = []
    for name, value in options.items():
        if value is None:
            continue
        # JSON spelling for objects and booleans (env as {"K": "V"}, true/false), as the API.
        shown = json.dumps(value, sort_keys=True) if isinstance(value, dict | bool) else value
        items.append(f"<dt>{h.e(name)}</dt><dd class=\"option-{h.e(name)}\">{h.e(shown)}</dd>")
    return f'<dl id="options">{"".join(items)}</dl>'


def _outputs_html(outputs: dict[str, Any], captured: bool) -> str:
    if not captured:
        return '<p class="message">Output was not captured for this job.</p>'
    if not outputs:
        return '<p class="message">No output yet.</p>'
    parts = []
    for node, record in outputs.items():
        parts.append(f'<section class="output" data-node="{h.e(node)}"><h4>{h.e(node)}</h4>')
        for channel in ("stdout", "stderr"):
            if record.get(channel) is not None:
                parts.append(f"<h5>{channel}</h5><pre class=\"{channel}\">"
                             f"{h.e(record[channel])}</pre>")
        parts.append("</section>")
    return "".join(parts)


class AbortAction:
    """``POST /dashboard/jobs/ID/abort`` with the session's CSRF token; writers only."""

    def __init__(self, ctx: ApiContext, sessions: Sessions) -> None:
        self._ctx = ctx
        self._sessions = sessions

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        viewer = self._sessions.viewer(req)
        self._sessions.check_csrf(viewer, _form(req, self._ctx).get("csrf_token"))
        if not viewer.can_write:
            raise NoAccess(f"{viewer.user_name} may not abort jobs")
        job = _find_job(self._ctx, viewer, job_id)
        try:
            self._ctx.broker.abort_job(viewer.org_id, job.id)
        except BrokerDown:
            raise DashboardUnavailable("the broker is not available; try again shortly") from None
        except BrokerRefused as err:
            if err.code != "already_finished":
                raise DashboardRefusal(f"cannot abort: {err.message or err.code}") from None
        h.secure_headers(resp)
        resp.status = 303
        resp.set_header("Location", f"/dashboard/jobs/{job.id}")


class NodesPage:
    """``GET /dashboard/nodes``: availability of every node of the org."""

    def __init__(self, ctx: ApiContext, sessions: Sessions) -> None:
        self._ctx = ctx
        self._sessions = sessions

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        viewer = self._sessions.viewer(req)
        try:
            states = self._ctx.broker.node_states(viewer.org_id, None)
        except BrokerDown:
            raise DashboardUnavailable("the broker is not available; try again shortly") from None
        states = sorted(states, key=lambda s: str(s.get("node_name")))
        available = sum(1 for s in states if s.get("availability") == "available")
        rows = "".join(
            f'<tr data-node="{h.e(s.get("node_name"))}"><td class="node">'
            f'{h.e(s.get("node_name"))}</td>'
            f'<td class="availability">{h.e(s.get("availability", "unavailable"))}</td>'
            f'<td class="state">{h.e(s.get("status", "offline"))}</td>'
            f'<td class="last-seen">{h.e(s.get("last_seen") or "-")}</td></tr>'
            for s in states
        )
        body = (
            f'<p id="node-summary"><span id="available">{available}</span> available, '
            f'<span id="unavailable">{len(states) - available}</span> unavailable</p>'
            '<table id="node-list"><thead><tr><th>Node</th><th>Availability</th>'
            f"<th>State</th><th>Last seen</th></tr></thead><tbody>{rows}</tbody></table>"
        )
        h.send_html(resp, h.page("Nodes", body, viewer=viewer, page_name="nodes"))


class JobDataResource:
    """``GET /dashboard/api/jobs/ID``: the job as the pages show it (JSON, for the script)."""

    def __init__(self, ctx: ApiContext, sessions: Sessions) -> None:
        self._ctx = ctx
        self._sessions = sessions

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        viewer = self._sessions.viewer(req)
        job = _find_job(self._ctx, viewer, job_id)
        doc = job_detail(self._ctx.store, viewer.org_id, job, utcnow())
        send_json(resp, doc)
        h.secure_headers(resp)


def _start_stream(req: falcon.Request, resp: falcon.Response) -> None:
    resp.status = 200
    resp.content_type = EVENT_STREAM
    resp.set_header("Cache-Control", "no-cache")
    resp.set_header("X-Accel-Buffering", "no")


class OrgFeed:
    """``GET /dashboard/feed``: the org feed of pushd/api/feeds.py, for the session's org."""

    def __init__(self, ctx: ApiContext, sessions: Sessions) -> None:
        self._ctx = ctx
        self._sessions = sessions

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        viewer = self._sessions.viewer(req)
        _start_stream(req, resp)
        resp.stream = self._ctx.feeds.org_stream(viewer.org_id, req.get_header("Last-Event-ID"))


class JobFeed:
    """``GET /dashboard/feed/ID``: the job feed (replay, live events, then ``summary``)."""

    def __init__(self, ctx: ApiContext, sessions: Sessions) -> None:
        self._ctx = ctx
        self._sessions = sessions

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        viewer = self._sessions.viewer(req)
        job = _find_job(self._ctx, viewer, job_id)
        _start_stream(req, resp)
        resp.stream = self._ctx.feeds.job_stream(
            viewer.org_id, job.id, req.get_header("Last-Event-ID")
        )


class StaticResource:
    """``GET /dashboard/static/NAME``: the script and the stylesheet (no session needed)."""

    def __init__(self) -> None:
        folder = package_files.files("pushd.api.dashboard") / "static"
        self._files = {name: (folder / name).read_bytes() for name in STATIC_TYPES}

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        data = self._files.get(name)
        if data is None:
            raise ApiError(404, f"no static file {name!r}")
        resp.status = 200
        resp.content_type = STATIC_TYPES[name]
        resp.data = data
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Content-Type-Options", "nosniff")
