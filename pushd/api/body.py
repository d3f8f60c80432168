"""Bounded reading of request bodies.

    read_body(req, limit) -> bytes
        The whole body, at most `limit` bytes. A larger ``Content-Length`` is refused before
        anything is read, and a chunked body is cut off one byte past the limit, so a client
        can never make a worker buffer more than `limit` + 1 bytes. Too large: ApiError 413
        ``{"error": "JSON must be no more than LIMIT bytes."}`` (the original's message).
"""

from __future__ import annotations

import falcon

from pushd.api.errors import ApiError


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"JSON must be no more than {limit} bytes.")


def read_body(req: falcon.Request, limit: int) -> bytes:
    length = req.content_length
    if length is not None and length > limit:
        raise too_large(limit)
    data = req.bounded_stream.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit)
    return data
