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
    if length is not None:
        if length > limit:
            raise too_large(limit)
        return req.bounded_stream.read(length)
    # Chunked upload: falcon's bounded stream would read nothing without a length, so read
    # the server's (de-chunking) input directly, never more than one byte past the limit.
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        piece = req.stream.read(limit + 1 - size)
        if not piece:
            break
        parts.append(piece)
        size += len(piece)
    if size > limit:
        raise too_large(limit)
    return b"".join(parts)
