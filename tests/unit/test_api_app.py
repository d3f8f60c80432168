"""The Falcon app in-process: real store (SQLite and PostgreSQL), real Chef signatures, the real
local principal source and a real broker client whose broker is not running (so every call that
needs the broker meets the real "broker down" path). Feeds replay events persisted through the
store exactly as the broker writes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from pushd import chefauth, store
from pushd.api.app import create_app
from pushd.api.broker import BrokerGateway
from pushd.broker.control_client import BrokerClient
from pushd.identity import authz
from pushd.identity.local import LocalSource
from pushd.keys import generate_client_keypair
from pushd.settings import Settings
from pushd.states import JobStatus, NodeStatus
from tests.support.databases import postgres_database, sqlite_database

ORG = "acme"
_keys: dict[str, tuple[str, str]] = {}


def keypair(name: str) -> tuple[str, str]:
    if name not in _keys:
        _keys[name] = generate_client_keypair()
    return _keys[name]


@dataclass
class Api:
    client: falcon.testing.TestClient
    org_id: str
    other_org_id: str

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user: str = "admin",
        headers: dict[str, str] | None = None,
        query: str | None = None,
    ) -> falcon.testing.Result:
        full = path if path.startswith("/") else f"/organizations/{ORG}/pushy/{path}"
        raw = body or b"" if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        signed = chefauth.sign_request(method, full, raw, user, keypair(user)[0])
        signed.update(headers or {})
        return self.client.simulate_request(
            method, full, body=raw or None, headers=signed, query_string=query
        )


@pytest.fixture(params=["sqlite"])
def db_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict]]:
    """SQLite unless a test asks for both backends with BOTH_BACKENDS (the storage-heavy ones):
    the HTTP behaviour under test does not depend on the backend, and each PostgreSQL
    database costs a second to create."""
    if request.param == "postgres":
        with postgres_database() as params:
            yield "postgres", params
    else:
        with sqlite_database(tmp_path) as params:
            yield "sqlite", params


BOTH_BACKENDS = pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def api(db_backend: tuple[str, dict[str, Any]], tmp_path: Path) -> Iterator[Api]:
    kind, params = db_backend
    store.open_database_params(kind, params, migrate=True)
    try:
        org = store.create_organization(ORG)
        other = store.create_organization("other")
        for name, admin in (("admin", True), ("normal", False)):
            store.create_principal(org.id, name, "user", keypair(name)[1], admin=admin)
        store.add_group_member(org.id, "admins", "user", "admin", create_group=True)
        store.create_principal(org.id, "node1", "client", keypair("node1")[1])
        store.create_principal(other.id, "stranger", "user", keypair("stranger")[1])
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        broker = BrokerGateway(BrokerClient(run_dir, timeout=0.05).request)
        settings = Settings.from_values(
            {"server_name_advertised": "push.example", "keep_alive_time": 1, "jobs_page_limit": 50}
        )
        app = create_app(
            settings, store, LocalSource(), broker, authz=authz, server_public_key_pem="PEM"
        )
        yield Api(falcon.testing.TestClient(app), org.id, other.id)
    finally:
        store.close_database()


def create(api: Api, **fields: Any) -> str:
    body = {"command": "chef-client", "nodes": ["node1", "node2"], **fields}
    result = api.call("POST", "jobs", body)
    assert result.status_code == 201, result.text
    return result.json["uri"].rsplit("/", 1)[1]


# -- jobs ---------------------------------------------------------------------------------


@BOTH_BACKENDS
def test_post_creates_a_new_job_even_with_the_broker_down(api: Api) -> None:
    result = api.call("POST", "jobs", {"command": "uptime", "nodes": ["b", "a"]},
                      headers={"Host": "push.example:443", "X-Forwarded-Proto": "https"})
    assert result.status_code == 201
    uri = result.json["uri"]
    assert uri.startswith("https://push.example/organizations/acme/pushy/jobs/")
    assert result.headers["location"] == uri
    job_id = uri.rsplit("/", 1)[1]
    assert len(job_id) == 32 and job_id.startswith(api.org_id[-12:])
    doc = api.call("GET", f"jobs/{job_id}").json
    assert doc["status"] == "new"
    assert doc["nodes"] == {"new": ["a", "b"]}
    assert doc["run_timeout"] == 3600
    assert set(doc) == {"id", "command", "status", "run_timeout", "created_at", "updated_at",
                        "nodes"}
    assert doc["created_at"].endswith(" GMT")


@BOTH_BACKENDS
def test_job_options_and_include_file(api: Api) -> None:
    job_id = create(api, user="daemon", dir="/tmp", env={"K": "v"}, file="raw:data",
                    capture_output=True)
    doc = api.call("GET", f"jobs/{job_id}").json
    assert doc["user"] == "daemon" and doc["dir"] == "/tmp" and doc["env"] == {"K": "v"}
    assert doc["capture_output"] is True and doc["file_specified"] is True and "file" not in doc
    with_file = api.call("GET", f"jobs/{job_id}", query="include_file=true").json
    assert with_file["file"] == "raw:data" and "file_specified" not in with_file


VALIDATION_CASES = [
    ({"nodes": ["n"]}, "invalid command supplied"),
    ({"command": "x", "nodes": []}, "at least one node must be supplied"),
    ({"command": "x", "nodes": ["n"], "foo": 1}, "invalid key supplied"),
    ({"command": "x", "nodes": ["n"], "quorum": "1"},
     "invalid type supplied for quorum (expected a number)"),
    ({"command": "x", "nodes": ["n"], "run_timeout": "1"},
     "invalid type supplied for run_timeout (expected a number)"),
    ({"command": "x", "nodes": ["n"], "capture_output": "yes"},
     "invalid type supplied for capture_output (expected a boolean)"),
    ({"command": "x", "nodes": ["n"], "file": "zzz"},
     "invalid file contents (expected 'base64:...' or 'raw:...')"),
    ({"command": "x", "nodes": ["n"], "file": "base64:!!"},
     "invalid file contents (couldn't decode base64 string)"),
    ({"command": "x", "nodes": ["n"], "file": "raw:" + "x" * 100_001},
     "invalid file size (must be <= 100000 bytes)"),
    ({"command": "x", "nodes": ["n"], "run_timeout": 0},
     "invalid value supplied for run_timeout (expected a positive integer)"),
    ({"command": "x", "nodes": ["n"], "dir": "client"},
     "invalid dir supplied (expected an absolute path)"),
    ({"command": "x\ud800", "nodes": ["n"]}, "invalid text supplied for command (not valid UTF-8)"),
    ({"command": "x", "nodes": ["n"], "quorum": -1},
     "invalid value supplied for quorum (expected a non-negative integer)"),
    ({"command": "x", "nodes": ["n"], "run_timeout": 1.5},
     "invalid value supplied for run_timeout (expected a positive integer)"),
    (b'{"command":"x","nodes":["n"],"env":{"a":"1","a":"2"}}',
     "invalid environment value (duplicate key)"),
    (b"{not json", "request body is not valid JSON"),
]


def test_validation_messages_over_http(api: Api) -> None:
    for body, message in VALIDATION_CASES:
        result = api.call("POST", "jobs", body)
        assert (result.status_code, result.json) == (400, {"error": message}), body
    assert api.call("GET", "jobs").json == []  # nothing was stored


def test_body_over_a_million_bytes_is_413(api: Api) -> None:
    big = json.dumps({"command": "x" * 1_000_001, "nodes": ["n"]}).encode()
    result = api.call("POST", "jobs", big)
    assert result.status_code == 413
    assert result.json == {"error": "JSON must be no more than 1000000 bytes."}


@BOTH_BACKENDS
def test_list_pages_newest_first(api: Api) -> None:
    ids = [create(api, command=f"c{i}") for i in range(5)]
    first = api.call("GET", "jobs", query="limit=2")
    assert [j["id"] for j in first.json] == ids[::-1][:2]
    cursor = first.headers["x-next-cursor"]
    assert 'rel="next"' in first.headers["link"]
    second = api.call("GET", "jobs", query=f"limit=2&cursor={cursor}")
    third = api.call("GET", "jobs", query=f"limit=2&cursor={second.headers['x-next-cursor']}")
    assert [j["id"] for j in second.json + third.json] == ids[::-1][2:]
    assert "x-next-cursor" not in third.headers
    assert set(first.json[0]) == {"id", "command", "status", "run_timeout", "created_at",
                                  "updated_at"}


@BOTH_BACKENDS
def test_list_filters_by_status_and_rejects_bad_parameters(api: Api) -> None:
    done = create(api)
    create(api)
    store.set_job_status(api.org_id, done, JobStatus.COMPLETE)
    listed = api.call("GET", "jobs", query="status=complete").json
    assert [j["id"] for j in listed] == [done]
    for query in ("status=bogus", "limit=0", "limit=51", "limit=x", "cursor=garbage"):
        result = api.call("GET", "jobs", query=query)
        assert result.status_code == 400, query
        assert isinstance(result.json["error"], str)


def test_unknown_job_and_wrong_verbs(api: Api) -> None:
    missing = api.call("GET", "jobs/" + "0" * 32)
    assert missing.status_code == 404 and "error" in missing.json
    for method in ("PUT", "DELETE"):
        assert api.call(method, "jobs").status_code == 405
        result = api.call(method, "jobs/" + "0" * 32)
        assert result.status_code == 405 and "error" in result.json
    assert api.call("POST", "node_states").status_code == 405
    assert api.call("POST", "/pushy/_status").status_code == 405
    assert api.call("GET", "config").status_code == 404


@BOTH_BACKENDS
def test_cross_org_reads_answer_404(api: Api) -> None:
    job_id = create(api, capture_output=True)
    store.store_output(api.org_id, job_id, "node1", "out", "err")
    store.create_principal(api.other_org_id, "admin", "user", keypair("admin")[1], admin=True)
    store.add_group_member(api.other_org_id, "admins", "user", "admin", create_group=True)
    base = f"/organizations/other/pushy/jobs/{job_id}"
    assert api.call("GET", f"jobs/{job_id}/output/node1/stdout").content == b"out"
    assert api.call("GET", base).status_code == 404
    assert api.call("GET", base + "/output/node1/stdout").status_code == 404
    feed = api.call("GET", f"/organizations/other/pushy/job_status_feed/{job_id}",
                    headers={"Accept": "text/event-stream"})
    assert feed.status_code == 404


@BOTH_BACKENDS
def test_output_endpoint(api: Api) -> None:
    job_id = create(api, capture_output=True)
    store.store_output(api.org_id, job_id, "node1", "hello\n", "")
    out = api.call("GET", f"jobs/{job_id}/output/node1/stdout",
                   headers={"Accept": "application/octet-stream"})
    assert out.status_code == 200
    assert out.headers["content-type"] == "application/octet-stream"
    assert out.content == b"hello\n"
    assert api.call("GET", f"jobs/{job_id}/output/node1/stderr").content == b""
    assert api.call("GET", f"jobs/{job_id}/output/node2/stdout").status_code == 404
    assert api.call("GET", f"jobs/{job_id}/output/node1/stdin").status_code == 404
    refused = api.call("GET", f"jobs/{job_id}/output/node1/stdout",
                       headers={"Accept": "application/json"})
    assert refused.status_code == 406


# -- authentication and authorization -------------------------------------------------------


def test_unsigned_request_is_400_with_the_listed_shape(api: Api) -> None:
    result = api.client.simulate_get(f"/organizations/{ORG}/pushy/jobs")
    assert result.status_code == 400
    assert result.json["error"][0].startswith("missing required authentication header(s)")


def test_bogus_org_is_404(api: Api) -> None:
    result = api.call("GET", "/organizations/nope/pushy/jobs")
    assert result.status_code == 404
    assert result.json == {"error": ["organization 'nope' does not exist."]}


def test_outside_user_is_403_and_unknown_user_401(api: Api) -> None:
    result = api.call("GET", "jobs", user="stranger")
    assert result.status_code == 403
    assert result.json == {"error": ["'stranger' is not associated with organization 'acme'"]}
    keypair("ghost")
    ghost = api.call("GET", "jobs", user="ghost")
    assert ghost.status_code == 401
    assert "ghost" in ghost.json["error"][0]


def test_write_needs_admins_without_a_writers_group(api: Api) -> None:
    denied = {"error": ["User or client 'normal' does not have access to that action on this "
                        "server."]}
    result = api.call("POST", "jobs", {"command": "x", "nodes": ["n"]}, user="normal")
    assert (result.status_code, result.json) == (403, denied)
    assert api.call("POST", "jobs", {"command": "x", "nodes": ["n"]}, user="node1").status_code \
        == 403
    assert api.call("GET", "jobs", user="normal").status_code == 200
    store.add_group_member(api.org_id, "pushy_job_writers", "user", "normal", create_group=True)
    assert api.call("POST", "jobs", {"command": "x", "nodes": ["n"]}, user="normal").status_code \
        == 201


@BOTH_BACKENDS
def test_readers_group_with_nesting(api: Api) -> None:
    store.add_group_member(api.org_id, "pushy_job_readers", "group", "ops", create_group=True)
    assert api.call("GET", "jobs", user="normal").status_code == 403
    store.add_group_member(api.org_id, "ops", "user", "normal", create_group=True)
    assert api.call("GET", "jobs", user="normal").status_code == 200


# -- broker-dependent endpoints with the broker down ---------------------------------------


def test_broker_down_is_503_json(api: Api) -> None:
    for path in ("node_states", "node_states/node1", "/_status"):
        result = api.call("GET", path)
        assert result.status_code == 503, path
        assert "error" in result.json
    config = api.call("GET", "config/node1", user="node1", query="ccpk=" + "a" * 40)
    assert config.status_code == 503


def test_config_checks_ccpk_and_node_name_before_admission(api: Api) -> None:
    assert api.call("GET", "config/node1", user="node1").json == {"error": ["Missing ccpk"]}
    bad = api.call("GET", "config/node1", user="node1", query="ccpk=short")
    assert (bad.status_code, bad.json) == (401, {"error": ["Bad ccpk"]})
    # 40 characters of the Z85 alphabet whose groups are worth more than 2**32: no key.
    overflow = api.call("GET", "config/node1", user="node1", query="ccpk=" + "#" * 40)
    assert (overflow.status_code, overflow.json) == (401, {"error": ["Bad ccpk"]})
    other = api.call("GET", "config/node2", user="node1", query="ccpk=" + "a" * 40)
    assert (other.status_code, other.json) == (403, {"error": ["Client and node name must match"]})


# -- feeds ----------------------------------------------------------------------------------


def finish(api: Api, job_id: str) -> list[int]:
    ids = store.append_events(
        [
            (api.org_id, job_id, "start", {"command": "chef-client", "run_timeout": 3600,
                                           "quorum": 2, "node_count": 2, "user": "admin",
                                           "capture": False}),
            (api.org_id, job_id, "quorum_vote", {"node": "node1", "status": "down"}),
            (api.org_id, job_id, "job_complete", {"status": "quorum_failed"}),
        ]
    )
    store.set_node_statuses(api.org_id, job_id, {"node1": NodeStatus.UNAVAILABLE,
                                                 "node2": NodeStatus.UNAVAILABLE})
    store.set_job_status(api.org_id, job_id, JobStatus.QUORUM_FAILED)
    return ids


def parse_stream(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or not line:
                continue
            key, _, value = line.partition(": ")
            fields[key] = json.loads(value) if key == "data" else value
        if fields:
            events.append(fields)
    return events


@BOTH_BACKENDS
def test_finished_job_feed_replays_history_then_summary(api: Api) -> None:
    job_id = create(api)
    ids = finish(api, job_id)
    result = api.call("GET", f"job_status_feed/{job_id}", headers={"Accept": "text/event-stream"})
    assert result.status_code == 200
    assert result.headers["content-type"] == "text/event-stream"
    assert result.headers["x-accel-buffering"] == "no"
    events = parse_stream(result.text)
    assert [e["event"] for e in events] == ["start", "quorum_vote", "job_complete", "summary"]
    assert [int(e["id"]) for e in events[:3]] == ids
    assert all("timestamp" in e["data"] for e in events)
    assert events[-1]["data"]["status"] == "quorum_failed"
    assert events[-1]["data"]["nodes"] == {"unavailable": ["node1", "node2"]}
    resumed = api.call("GET", f"job_status_feed/{job_id}",
                       headers={"Accept": "text/event-stream", "Last-Event-ID": str(ids[0])})
    assert [e["event"] for e in parse_stream(resumed.text)] == ["quorum_vote", "job_complete",
                                                                "summary"]
    bogus = api.call("GET", f"job_status_feed/{job_id}",
                     headers={"Accept": "text/event-stream", "Last-Event-ID": "job-7"})
    assert len(parse_stream(bogus.text)) == 4


def test_feed_refusals(api: Api) -> None:
    job_id = create(api)
    assert api.call("GET", f"job_status_feed/{job_id}",
                    headers={"Accept": "application/json"}).status_code == 406
    assert api.call("GET", "job_status_feed/" + "f" * 32,
                    headers={"Accept": "text/event-stream"}).status_code == 404
    assert api.call("POST", f"job_status_feed/{job_id}").status_code == 405




@BOTH_BACKENDS
def test_long_history_streams_in_pages_and_resumes_across_a_page(api: Api) -> None:
    job_id = create(api)
    many = [(api.org_id, job_id, "rehab", {"node": f"n{i}"}) for i in range(1203)]
    ids = store.append_events(many)
    ids += store.append_events([(api.org_id, job_id, "job_complete", {"status": "crashed"})])
    store.set_job_status(api.org_id, job_id, JobStatus.CRASHED)
    stream = {"Accept": "text/event-stream"}
    events = parse_stream(api.call("GET", f"job_status_feed/{job_id}", headers=stream).text)
    assert [int(e["id"]) for e in events[:-1]] == ids
    assert events[-1]["event"] == "summary" and events[-1]["data"]["status"] == "crashed"
    resumed = parse_stream(
        api.call("GET", f"job_status_feed/{job_id}",
                 headers={**stream, "Last-Event-ID": str(ids[499])}).text
    )
    assert [int(e["id"]) for e in resumed[:-1]] == ids[500:]
    after_end = parse_stream(
        api.call("GET", f"job_status_feed/{job_id}",
                 headers={**stream, "Last-Event-ID": str(ids[-1])}).text
    )
    assert [e["event"] for e in after_end] == ["summary"]


@BOTH_BACKENDS
def test_job_complete_committed_just_after_the_status_is_still_streamed(api: Api) -> None:
    """The stream re-reads briefly when it finds the job over before seeing job_complete."""
    import threading

    job_id = create(api)
    store.append_events([(api.org_id, job_id, "start", {"command": "chef-client"})])
    store.set_job_status(api.org_id, job_id, JobStatus.COMPLETE)

    def late_event() -> None:
        with store.connection():
            store.append_events([(api.org_id, job_id, "job_complete", {"status": "complete"})])

    timer = threading.Timer(0.3, late_event)
    timer.start()
    try:
        result = api.call("GET", f"job_status_feed/{job_id}",
                          headers={"Accept": "text/event-stream"})
    finally:
        timer.join()
    assert [e["event"] for e in parse_stream(result.text)] == ["start", "job_complete", "summary"]


def test_a_job_over_without_job_complete_ends_with_its_summary(api: Api) -> None:
    job_id = create(api)
    store.append_events([(api.org_id, job_id, "start", {"command": "chef-client"})])
    store.set_job_status(api.org_id, job_id, JobStatus.CRASHED)
    result = api.call("GET", f"job_status_feed/{job_id}", headers={"Accept": "text/event-stream"})
    events = parse_stream(result.text)
    assert [e["event"] for e in events] == ["start", "summary"]
    assert events[-1]["data"]["status"] == "crashed"


# -- input only the store refuses, and an unreachable database -----------------------------


@BOTH_BACKENDS
def test_text_the_store_cannot_hold_is_400_and_stores_nothing(api: Api) -> None:
    # NUL passes every validation rule of the original; only the store refuses it (PostgreSQL
    # cannot hold it at all). The original's fallback message answers, with the store's reason.
    for fields in ({"command": "echo \x00"}, {"dir": "/tmp/\x00"}, {"user": "ro\x00ot"}):
        body = {"command": "uptime", "nodes": ["node1"], **fields}
        result = api.call("POST", "jobs", body)
        assert result.status_code == 400, (fields, result.text)
        assert result.json["error"] == "an unknown validation error has occurred", fields
        assert "NUL" in result.json["reason"], result.json
    # an environment no process could receive is refused by validation itself
    for env in ({"A": "b\x00"}, {"A\x00": "b"}):
        result = api.call("POST", "jobs", {"command": "uptime", "nodes": ["node1"], "env": env})
        assert (result.status_code, result.json) == (
            400, {"error": "invalid environment value (expected an object of strings)"})
    assert api.call("GET", "jobs").json == []


def test_an_unreachable_database_is_503_json(tmp_path: Path) -> None:
    import psycopg

    from tests.support.databases import POSTGRES_ADMIN_URL

    with postgres_database() as params:
        store.open_database_params("postgres", params, migrate=True)
        try:
            org = store.create_organization(ORG)
            store.create_principal(org.id, "admin", "user", keypair("admin")[1], admin=True)
            run_dir = tmp_path / "run"
            run_dir.mkdir()
            broker = BrokerGateway(BrokerClient(run_dir, timeout=0.05).request)
            settings = Settings.from_values({"server_name_advertised": "push.example"})
            app = create_app(
                settings, store, LocalSource(), broker, authz=authz, server_public_key_pem="PEM"
            )
            api = Api(falcon.testing.TestClient(app), org.id, "")
            assert api.call("GET", "jobs").status_code == 200
            # The database goes away under the running app (its pooled connections too).
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{params["database"]}" WITH (FORCE)')
            for method, path, body in (("GET", "jobs", None), ("GET", "jobs/" + "0" * 32, None),
                                       ("POST", "jobs", {"command": "x", "nodes": ["n"]})):
                result = api.call(method, path, body)
                assert result.status_code == 503, (path, result.text)
                assert result.json == {
                    "error": "the database is not available; try again shortly"}
        finally:
            store.close_database()


@BOTH_BACKENDS
def test_a_nul_in_the_path_is_404_json_not_500(api: Api) -> None:
    # %00 decodes to NUL, which PostgreSQL text cannot hold: a lookup with it was a 500 there.
    from urllib.parse import quote

    job_id = create(api)
    for method, path in (
        ("GET", f"jobs/{job_id}\x00"),
        ("GET", f"jobs/{job_id}/output/node\x001/stdout"),
        ("POST", "jobs/ab\x00cd/abort"),
        ("GET", "job_status_feed/ab\x00cd"),
        ("GET", "node_states/node\x001"),
        ("GET", "config/node\x001"),
    ):
        full = f"/organizations/{ORG}/pushy/{path}"
        signed = chefauth.sign_request(method, full, b"", "admin", keypair("admin")[0])
        result = api.client.simulate_request(method, quote(full), headers=signed)
        assert (result.status_code, result.json) == (404, {"error": "not found"}), path
    org = quote("/organizations/ac\x00me/pushy/jobs")
    assert api.call("GET", org).status_code == 404
    assert api.call("GET", f"jobs/{job_id}").status_code == 200


@BOTH_BACKENDS
def test_org_feed_history_reaches_back_24_hours_by_default(api: Api) -> None:
    from datetime import UTC, datetime, timedelta

    from pushd.api.documents import job_document
    from pushd.api.feeds import FeedStreams
    from pushd.store.models import JobEvent
    from pushd.store.times import to_naive_utc

    old_job, recent_job = create(api), create(api)
    start = {"command": "chef-client", "run_timeout": 3600, "quorum": 2, "node_count": 2,
             "user": "admin", "capture": False}
    old_id, recent_id = store.append_events([(api.org_id, old_job, "start", start),
                                             (api.org_id, recent_job, "start", start)])
    now = datetime.now(UTC)
    for event_id, age in ((old_id, timedelta(hours=25)), (recent_id, timedelta(hours=23))):
        JobEvent.update(created_at=to_naive_utc(now - age)).where(
            JobEvent.id == event_id).execute()
    retention = float(Settings.from_values({}).get("org_feed_retention"))
    feeds = FeedStreams(store, None, summary=job_document, org_retention=retention)
    # A reader resuming from an id the server no longer has gets the whole kept history.
    stream = feeds.org_stream(api.org_id, "gone-1")
    try:
        frames = [next(stream).decode(), next(stream).decode()]
    finally:
        stream.close()
    assert frames[0].startswith("event: start_of_history")
    assert f"id: {recent_id}\n" in frames[1] and recent_job in frames[1]
    assert old_job not in "".join(frames)
