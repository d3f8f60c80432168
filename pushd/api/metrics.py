"""The API workers' Prometheus samples (pushd.metrics.families).

    RequestMetrics            falcon middleware: pushd_http_requests_total{method,route,code}
                              and pushd_http_request_duration_seconds{method,route}; `route` is
                              the route's template (`/organizations/{org}/pushy/jobs/{job_id}`),
                              "unmatched" for paths no route serves, never the raw path
    count_auth_failure(reason)

(Open SSE streams are counted where they are made, in pushd.api.feeds.FeedStreams.)
"""

from __future__ import annotations

import time
from typing import Any

import falcon

from pushd.metrics import families

UNMATCHED = "unmatched"
# Why a request is refused (pushd.errors.AuthError.reason and the API's own checks), exported
# at 0 from a worker's start so alerts on rate() have a series before the first failure.
AUTH_FAILURE_REASONS = ("bad_signature", "bad_timestamp", "clock_skew", "forbidden",
                        "missing_headers", "not_member", "unknown_org", "unknown_principal",
                        "unsupported_version")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class RequestMetrics:
    def __init__(self) -> None:
        for reason in AUTH_FAILURE_REASONS:
            families.AUTH_FAILURES.labels(reason=reason)
        for feed in ("job", "org"):
            families.SSE_STREAMS.labels(feed=feed)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.metrics_started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        started = getattr(req.context, "metrics_started", None)
        route = req.uri_template if resource is not None and req.uri_template else UNMATCHED
        # Any method string a client sends would be a new series: name only the real ones.
        method = req.method if req.method in _METHODS else "other"
        families.HTTP_REQUESTS.labels(method, route, str(resp.status_code)).inc()
        if started is not None:
            families.HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)


def count_auth_failure(reason: str) -> None:
    families.AUTH_FAILURES.labels(reason=reason).inc()
