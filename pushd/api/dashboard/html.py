"""HTML for the dashboard: escaping, the page frame and the security headers.

    e(value) -> str                 html.escape of str(value) (quotes too); None is ''
    page(title, body, *, viewer=None, page_name, data=None) -> str
        A whole document: title, navigation, the stylesheet and the script (both static files:
        no inline script or style, so the Content-Security-Policy can forbid them). `data`
        becomes escaped ``data-*`` attributes on <body>, which the script reads.
    secure_headers(resp)            CSP, no caching, no referrer (a login URL holds a token),
                                    nosniff, frame denial
    send_html(resp, text, status=200)

Every value that comes from a job or a node goes through `e` before it lands in markup; the
script only ever sets ``textContent``.
"""

from __future__ import annotations

import html
from typing import Any

import falcon

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC = "/dashboard/static"


def e(value: Any) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def secure_headers(resp: falcon.Response) -> None:
    resp.set_header("Content-Security-Policy", CSP)
    resp.set_header("Cache-Control", "no-store")
    resp.set_header("Referrer-Policy", "no-referrer")
    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.set_header("X-Frame-Options", "DENY")


def send_html(resp: falcon.Response, text: str, status: int = 200) -> None:
    resp.status = status
    resp.content_type = "text/html; charset=utf-8"
    resp.text = text
    secure_headers(resp)


def _nav(viewer: Any) -> str:
    if viewer is None:
        return ""
    rights = "read and write" if viewer.can_write else "read only"
    return (
        '<nav><a href="/dashboard/">Jobs</a> <a href="/dashboard/nodes">Nodes</a>'
        f' <span class="who">{e(viewer.user_name)} @ {e(viewer.org_name)} ({rights})</span>'
        '<form method="post" action="/dashboard/logout" class="logout">'
        f'<input type="hidden" name="csrf_token" value="{e(viewer.csrf_token)}">'
        '<button type="submit">Log out</button></form></nav>'
    )


def page(
    title: str,
    body: str,
    *,
    viewer: Any = None,
    page_name: str = "",
    data: dict[str, str] | None = None,
) -> str:
    attrs = "".join(f' data-{e(k)}="{e(v)}"' for k, v in (data or {}).items())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{e(title)} - pushd</title>"
        f'<link rel="stylesheet" href="{STATIC}/dashboard.css">'
        f'<script src="{STATIC}/dashboard.js" defer></script></head>'
        f'<body data-page="{e(page_name)}"{attrs}>'
        f"<header><h1>pushd</h1>{_nav(viewer)}</header>"
        f"<main><h2>{e(title)}</h2>{body}</main></body></html>\n"
    )


def message_page(title: str, text: str) -> str:
    return page(title, f'<p class="message">{e(text)}</p>', page_name="message")
