"""Job endpoints: create, list, read, abort, output (original-server.md 5.4-5.7).

    JobsResource        GET (list, newest first, paged) and POST (create) ``.../pushy/jobs``
    JobResource         GET ``.../pushy/jobs/ID[?include_file=true]``
    JobAbortResource    POST ``.../pushy/jobs/ID/abort`` (pushd addition): 200
                        ``{"id", "status": "aborted"}``; 404 unknown job; 409 already finished;
                        writer access, like creating a job
    JobRerunResource    POST ``.../pushy/jobs/ID/rerun`` (issue 17) ``{"nodes": "failed" | "all" |
                        [names]}``: 201 ``{"uri", "id", "rerun_of"}`` of a new job (api/rerun.py);
                        400 bad selection, 404 unknown job, 409 "failed" of an unfinished job
    JobOutputResource   GET ``.../pushy/jobs/ID/output/NODE/stdout|stderr[?offset=N]``
                        (with offset: the bytes from stream offset N on, and X-Output-Size,
                        the offset to ask for next; the output of a running node grows as its
                        live chunks arrive)

Listing: the body stays a JSON array (knife parses that). ``?limit=N`` (default and maximum
``jobs_page_limit``), ``?status=NAME`` and ``?cursor=C`` page through it; when there is more, the
response carries ``X-Next-Cursor`` and a ``Link: <...>; rel="next"`` header.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import falcon

from pushd.api.body import read_body
from pushd.api.broker import BrokerDown, BrokerRefused
from pushd.api.context import ApiContext
from pushd.api.documents import job_document, job_summary
from pushd.api.errors import ApiError
from pushd.api.formats import new_job_id
from pushd.api.rerun import RerunConflict, parse_rerun_request, rerun_plan
from pushd.api.resources.common import (
    authorized,
    broker_call,
    find_job,
    org_id_of,
    send_json,
)
from pushd.api.validation import UNKNOWN, JobValidationError, parse_job_request
from pushd.states import JobStatus
from pushd.store.db import InvalidValue

log = logging.getLogger(__name__)

CHANNELS = ("stdout", "stderr")
MAX_CURSOR = 200


def job_uri(req: falcon.Request, org: str, job_id: str) -> str:
    """The job's URI as the original builds it: X-Forwarded-Proto, Host, no default port."""
    scheme = (req.get_header("X-Forwarded-Proto") or req.scheme or "http").split(",")[0].strip()
    host = req.get_header("Host") or req.host
    for default_port in (":80", ":443"):
        if host.endswith(default_port):
            host = host[: -len(default_port)]
    return f"{scheme}://{host}/organizations/{org}/pushy/jobs/{job_id}"


def create_and_start(
    ctx: ApiContext,
    org_id: str,
    requestor: str,
    command: str,
    nodes: list[str],
    quorum: int,
    run_timeout: int,
    options: dict[str, Any],
) -> str:
    """Write a new job (status `new`) and ask the broker to start it; return its id."""
    job_id = new_job_id(org_id)
    try:
        # This server's broker runs it (the cluster's coordinator for it; SQLite: the one).
        ctx.store.create_job(
            org_id, job_id, command, nodes, quorum, run_timeout, requestor, options,
            coordinator=ctx.settings.cluster_member,
        )
    except InvalidValue as err:
        # Input every rule of the original admits but the store cannot hold (a NUL
        # character: PostgreSQL text has none). Nothing was written.
        raise ApiError(400, UNKNOWN, reason=str(err)) from None
    try:
        ctx.broker.start_job(org_id, job_id)
    except BrokerDown as err:
        # No answer in time is not proof the broker is down: a busy broker reads the
        # request later, a restarting one finds the row (status `new`) when it starts.
        # Either way the job starts; say so without calling a running broker unavailable.
        log.warning("no answer yet from the broker about job %s (%s); it is stored and "
                    "starts when the broker reads the request or (re)starts", job_id, err)
    except BrokerRefused as err:
        log.warning("broker refused to start job %s: %s", job_id, err)
    return job_id


class JobsResource:
    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        settings = self._ctx.settings
        body = read_body(req, settings.max_request_body)
        requestor = authorized(self._ctx, req, org, "write", body)
        try:
            job = parse_job_request(
                body,
                default_run_timeout=settings.default_running_timeout,
                max_file_size=settings.max_job_file_size,
            )
        except JobValidationError as err:
            raise ApiError(400, err.message) from None
        org_id = org_id_of(requestor)
        job_id = create_and_start(
            self._ctx, org_id, requestor.name, job.command, job.nodes, job.quorum,
            job.run_timeout, job.options(),
        )
        uri = job_uri(req, org, job_id)
        resp.set_header("Location", uri)
        send_json(resp, {"uri": uri}, 201)

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str) -> None:
        requestor = authorized(self._ctx, req, org, "read")
        limit = self._limit(req)
        status = req.get_param("status")
        if status is not None:
            try:
                status_filter: Any = JobStatus.from_wire(status)
            except KeyError:
                raise ApiError(400, f"unknown job status '{status}'") from None
        else:
            status_filter = None
        cursor = req.get_param("cursor")
        if cursor is not None and (len(cursor) > MAX_CURSOR or not cursor.isprintable()):
            raise ApiError(400, "invalid cursor")
        try:
            jobs, next_cursor = self._ctx.store.list_jobs(
                org_id_of(requestor), limit=limit, status=status_filter, before=cursor
            )
        except ValueError:
            raise ApiError(400, "invalid cursor") from None
        if next_cursor:
            query = {"limit": limit, "cursor": next_cursor}
            if status is not None:
                query["status"] = status
            resp.set_header("X-Next-Cursor", str(next_cursor))
            resp.set_header("Link", f'<{req.path}?{urlencode(query)}>; rel="next"')
        send_json(resp, [job_summary(job) for job in jobs])

    def _limit(self, req: falcon.Request) -> int:
        maximum = self._ctx.settings.jobs_page_limit
        raw = req.get_param("limit")
        if raw is None:
            return maximum
        if not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise ApiError(400, f"limit must be an integer from 1 to {maximum}")
        return int(raw)


class JobResource:
    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, org: str, job_id: str) -> None:
        requestor = authorized(self._ctx, req, org, "read")
        job = find_job(self._ctx, org_id_of(requestor), job_id)
        include_file = req.get_param_as_bool("include_file", default=False)
        send_json(resp, job_document(job, include_file=bool(include_file)))


class JobAbortResource:
    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, org: str, job_id: str) -> None:
        body = read_body(req, self._ctx.settings.max_request_body)
        requestor = authorized(self._ctx, req, org, "write", body)
        org_id = org_id_of(requestor)
        find_job(self._ctx, org_id, job_id)
        try:
            broker_call(self._ctx.broker.abort_job, org_id, job_id)
        except BrokerRefused as err:
            if err.code == "not_found":
                raise ApiError(404, f"job '{job_id}' not found") from None
            if err.code == "already_finished":
                raise ApiError(409, f"job '{job_id}' has already finished") from None
            raise ApiError(409, err.message or err.code) from None
        # The broker records the transition on its own loop; the job reads `aborted` shortly.
        send_json(resp, {"id": job_id, "status": "aborted"}, 200)


class JobRerunResource:
    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, org: str, job_id: str) -> None:
        body = read_body(req, self._ctx.settings.max_request_body)
        requestor = authorized(self._ctx, req, org, "write", body)
        org_id = org_id_of(requestor)
        job = find_job(self._ctx, org_id, job_id)
        try:
            nodes, quorum, options = rerun_plan(job, parse_rerun_request(body))
        except JobValidationError as err:
            raise ApiError(400, err.message) from None
        except RerunConflict as err:
            raise ApiError(409, str(err)) from None
        new_id = create_and_start(
            self._ctx, org_id, requestor.name, job.command, nodes, quorum, job.run_timeout,
            options,
        )
        uri = job_uri(req, org, new_id)
        resp.set_header("Location", uri)
        send_json(resp, {"uri": uri, "id": new_id, "rerun_of": job_id}, 201)


class JobOutputResource:
    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def on_get(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        org: str,
        job_id: str,
        node: str,
        channel: str,
    ) -> None:
        if channel not in CHANNELS:
            raise ApiError(404, f"no such output channel '{channel}'")
        requestor = authorized(self._ctx, req, org, "read")
        org_id = org_id_of(requestor)
        find_job(self._ctx, org_id, job_id)
        if not req.client_accepts("application/octet-stream"):
            raise ApiError(406, "this resource serves application/octet-stream")
        offset = _offset(req)
        if offset is None:
            output = self._ctx.store.get_output_bytes(org_id, job_id, node, channel)
            size = None
        else:
            found = self._ctx.store.get_output_from(org_id, job_id, node, channel, offset)
            output, size = (None, None) if found is None else found
        if output is None:
            raise ApiError(404, f"no {channel} captured for node '{node}' in job '{job_id}'")
        resp.status = 200
        resp.content_type = "application/octet-stream"
        if size is not None:
            # Where the stored stream ends: the offset to ask for next (pushd addition).
            resp.set_header("X-Output-Size", str(size))
        resp.data = bytes(output)


def _offset(req: falcon.Request) -> int | None:
    """`?offset=N` (bytes of the stream already read; pushd addition) or None when absent."""
    raw = req.get_param("offset")
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, f"offset must be a non-negative integer number of bytes, not "
                            f"{raw[:40]!r}")
    return int(raw)
