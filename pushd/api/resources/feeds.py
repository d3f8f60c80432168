"""``GET .../pushy/job_status_feed`` (org) and ``.../job_status_feed/ID`` (job), section 6.

Read access; ``Accept`` must allow ``text/event-stream`` (406 otherwise); an unknown job (in this
org) is 404. The response streams with ``X-Accel-Buffering: no`` so nginx does not buffer it;
``Last-Event-ID`` resumes (see pushd.api.feeds).
"""

from __future__ import annotations

import falcon

from pushd.api.context import ApiContext
from pushd.api.errors import ApiError
from pushd.api.resources.common import authorized, find_job, org_id_of

EVENT_STREAM = "text/event-stream"


def _start_stream(req: falcon.Request, resp: falcon.Response) -> None:
    if not req.client_accepts(EVENT_STREAM):
        raise ApiError(406, "feeds are served as text/event-stream; send Accept: text/event-stream")
    resp.status = 200
    resp.content_type = EVENT_STREAM
    resp.set_header("Cache-Control", "no-cache")
    resp.set_header("X-Accel-Buffering", "no")


class JobFeedResource:
    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str, job_id: str) -> None:
        requestor = authorized(self._ctx, req, org, "read")
        org_id = org_id_of(requestor)
        find_job(self._ctx, org_id, job_id)
        _start_stream(req, resp)
        resp.stream = self._ctx.feeds.job_stream(
            org_id, job_id, req.get_header("Last-Event-ID")
        )


class OrgFeedResource:
    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        requestor = authorized(self._ctx, req, org, "read")
        _start_stream(req, resp)
        resp.stream = self._ctx.feeds.org_stream(
            org_id_of(requestor), req.get_header("Last-Event-ID")
        )
