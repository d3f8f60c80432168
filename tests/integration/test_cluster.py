"""Several pushd servers on one PostgreSQL database are a cluster (issue 16), with real parts:
three servers on this machine (own dirs and ports), the machine's PostgreSQL, a real HAProxy
(TCP mode) in front of their API ports as the one URL nodes use, pushd's client processes and
the stock-protocol test peer (tests/support/cluster.py, bench/cluster.py).

Scenarios: three live members; nodes spread over the servers by HAProxy and node_states on
every server showing the whole fleet; a job POSTed to one server over nodes held by all three;
both feeds read from servers other than the coordinator (same ids, Last-Event-ID across
servers); the brokers' LISTEN connections ended by pg_terminate_backend and a cross-server job
still completing; and, on a cluster of its own, kill -9 of the server coordinating a running
job (the job still ends, its nodes move to the survivors, a job posted meanwhile to a survivor
runs, the killed server rejoins by itself).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.client_process import ClientProcess
from tests.support.cluster import (
    DOORBELL_PREFIX,
    PushdCluster,
    cluster_client,
    requires_haproxy,
    running_cluster,
    wait_client_connected,
)
from tests.support.server import PushdServer, SseEvent

pytestmark = [requires_haproxy, pytest.mark.postgres, pytest.mark.slow]

PEERS = ("peer0", "peer1", "peer2")
CLIENTS = ("client0", "client1", "client2")
FLEET = PEERS + CLIENTS
ACTIVE = ("new", "voting", "running")
MEMBERS = {"pushd0", "pushd1", "pushd2"}
# Whitelisted by both pushd's test client ("/sleep ([0-9]+)/") and the protocol peer.
QUICK = "sleep 0"


# -- helpers --------------------------------------------------------------------------------


def start_job(server: PushdServer, **fields: Any) -> str:
    resp = server.request("POST", "jobs", fields)
    assert resp.status == 201, (resp.status, resp.body)
    return str(resp.json()["uri"]).rsplit("/", 1)[1]


def wait_finished(
    cluster: PushdCluster, server: PushdServer, job_id: str, timeout: float = 40.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = server.request("GET", f"jobs/{job_id}")
        if resp.status == 200:
            doc = resp.json()
            if doc["status"] not in ACTIVE:
                return doc
        time.sleep(0.2)
    raise AssertionError(
        f"job {job_id} still {doc.get('status')} after {timeout}s on {server.base_url}: {doc}\n"
        + cluster.log_tails(40)
    )


def node_statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {node: status for status, nodes in doc["nodes"].items() for node in nodes}


def availability(server: PushdServer) -> dict[str, str]:
    resp = server.request("GET", "node_states")
    assert resp.status == 200, resp.body
    return {row["node_name"]: row["availability"] for row in resp.json()}


def wait_fleet_available(
    cluster: PushdCluster, server: PushdServer, nodes: tuple[str, ...] | list[str],
    timeout: float = 30.0,
) -> None:
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        seen = availability(server)
        if all(seen.get(node) == "available" for node in nodes):
            return
        time.sleep(0.2)
    raise AssertionError(
        f"{getattr(server, 'member', server.base_url)} node_states never showed"
        f" {sorted(nodes)} available: "
        f"{seen}\nholders: {cluster.holders()}\n" + cluster.log_tails(30)
    )


def read_until(stream: Any, predicate: Any, timeout: float = 30.0) -> list[SseEvent]:
    deadline = time.monotonic() + timeout
    events: list[SseEvent] = []
    while True:
        event = stream.next_event(max(0.1, deadline - time.monotonic()))
        assert event is not None, f"stream closed after {[(e.name, e.id) for e in events]}"
        events.append(event)
        if predicate(event):
            return events


def ids_and_names(events: list[SseEvent]) -> list[tuple[str | None, str | None]]:
    return [(e.id, e.name) for e in events]


# -- the shared cluster and its fleet -------------------------------------------------------


class Fleet:
    """Three stock-protocol peers and three pushd clients, all configured through HAProxy."""

    def __init__(self, cluster: PushdCluster, directory: Path) -> None:
        self.cluster = cluster
        self.directory = directory
        self.peers: dict[str, Any] = {}
        self.clients: dict[str, ClientProcess] = {}
        self.placement: dict[str, int] = {}

    def start(self) -> None:
        cluster = self.cluster
        # Round robin: nothing else goes through HAProxy meanwhile, so the three peers' config
        # fetches land on three different servers, and so do the three clients'.
        for node in PEERS:
            peer = cluster.peer(node, interval=0.5)
            index = cluster.server_of(peer)
            assert index is not None, peer.command_addr
            self.peers[node] = peer
            self.placement[node] = index
        for node in CLIENTS:
            client = cluster_client(cluster, self.directory, node)
            self.clients[node] = client
            client.start()
        for node, client in self.clients.items():
            self.placement[node] = wait_client_connected(cluster, client)
        for node in PEERS:
            self.peers[node].wait_for("abort", timeout=20)  # its session is open

    def held_by(self, index: int) -> list[str]:
        return [node for node in FLEET if self.placement[node] == index]

    def stop(self) -> None:
        for client in self.clients.values():
            client.stop()
        for peer in self.peers.values():
            peer.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[PushdCluster]:
    with running_cluster(size=3, nodes=FLEET) as started:
        yield started


@pytest.fixture(scope="module")
def fleet(cluster: PushdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    made = Fleet(cluster, tmp_path_factory.mktemp("fleet"))
    try:
        made.start()
        yield made
    finally:
        made.stop()


# -- the harness itself (works with or without the cluster brokers) -------------------------


def test_haproxy_spreads_the_fleet_and_a_job_on_one_servers_nodes_runs(
    cluster: PushdCluster, fleet: Fleet
) -> None:
    # Each server got one peer and one client through the one URL.
    assert sorted(fleet.placement[node] for node in PEERS) == [0, 1, 2], fleet.placement
    assert sorted(fleet.placement[node] for node in CLIENTS) == [0, 1, 2], fleet.placement
    home = cluster.servers[0]
    nodes = fleet.held_by(0)
    for node in nodes:
        home.wait_available(node, timeout=20)
    job = start_job(home, command="sleep 1", nodes=nodes)
    doc = wait_finished(cluster, home, job)
    assert doc["status"] == "complete", doc
    assert node_statuses(doc) == dict.fromkeys(nodes, "succeeded"), doc


# -- membership and the whole fleet on every server -----------------------------------------


def test_every_server_is_a_live_member(cluster: PushdCluster) -> None:
    deadline = time.monotonic() + 15
    while cluster.live_members() != MEMBERS and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.live_members() == MEMBERS, cluster.members()
    # push-jobs-server-ctl cluster-status on any server lists the three, each with its ports.
    for index in range(cluster.size):
        listed = cluster.status(index)
        assert [(m["member"], m["api_port"], m["expired"]) for m in listed] == [
            (s.member, s.api_port, False) for s in cluster.servers
        ], listed
        assert [(m["heartbeat_port"], m["command_port"]) for m in listed] == [
            (s.ports["server_heartbeat_port"], s.ports["command_port"]) for s in cluster.servers
        ], listed


def test_node_states_on_every_server_shows_the_whole_fleet(
    cluster: PushdCluster, fleet: Fleet
) -> None:
    for server in cluster.servers:
        wait_fleet_available(cluster, server, FLEET)
    # Each node is recorded as held by the server HAProxy sent it to, and cluster-status counts
    # them per member (a peer and a client each).
    held = cluster.holders()
    assert {node: held.get(node) for node in FLEET} == {
        node: (cluster.servers[fleet.placement[node]].member, True) for node in FLEET
    }
    listed = cluster.status(2)
    assert [(m["member"], m["nodes"], m["available_nodes"]) for m in listed] == [
        (s.member, 2, 2) for s in cluster.servers
    ], listed


# -- jobs across servers --------------------------------------------------------------------


def test_a_job_posted_to_one_server_runs_on_nodes_held_by_all_three(
    cluster: PushdCluster, fleet: Fleet
) -> None:
    wait_fleet_available(cluster, cluster.servers[0], FLEET)
    job = start_job(cluster.servers[0], command="sleep 1", nodes=list(FLEET))
    doc = wait_finished(cluster, cluster.servers[0], job)
    assert doc["status"] == "complete", doc
    assert node_statuses(doc) == dict.fromkeys(FLEET, "succeeded"), doc
    # The same job document from every server.
    documents = [s.request("GET", f"jobs/{job}").json() for s in cluster.servers]
    assert documents[1] == documents[0] and documents[2] == documents[0], documents


def test_feeds_read_from_other_servers_show_the_coordinators_events(
    cluster: PushdCluster, fleet: Fleet
) -> None:
    a, b, c = cluster.servers
    wait_fleet_available(cluster, a, FLEET)
    org_a = a.stream("job_status_feed", timeout=40)
    org_c = c.stream("job_status_feed", timeout=40)
    try:
        job = start_job(a, command="sleep 2", nodes=list(FLEET))
        live_b = b.stream(f"job_status_feed/{job}", timeout=40)
        try:
            from_b = read_until(live_b, lambda e: e.name == "summary", timeout=40)
        finally:
            live_b.close()

        def done(event: SseEvent) -> bool:
            return event.name == "job_complete" and (event.data or {}).get("job") == job

        org_from_a = [e for e in read_until(org_a, done) if (e.data or {}).get("job") == job]
        org_from_c = [e for e in read_until(org_c, done) if (e.data or {}).get("job") == job]
    finally:
        org_a.close()
        org_c.close()
    replay_a = a.stream(f"job_status_feed/{job}")
    try:
        from_a = replay_a.rest(timeout=20)
    finally:
        replay_a.close()
    assert from_b[-1].data is not None and from_b[-1].data["status"] == "complete", from_b[-1]
    # The job feed read live on B is the coordinator's history, id for id.
    assert ids_and_names(from_b) == ids_and_names(from_a)
    names = [e.name for e in from_a]
    assert names[0] == "start" and names.count("run_start") == len(FLEET), names
    assert names[-2:] == ["job_complete", "summary"], names
    ends = {e.data["node"]: e.data["status"] for e in from_a if e.name == "run_complete" and e.data}
    assert ends == dict.fromkeys(FLEET, "success"), ends
    # The org feed on C is the org feed on A, and its job events are the job feed's.
    assert ids_and_names(org_from_c) == ids_and_names(org_from_a)
    assert ids_and_names(org_from_a) == [
        (e.id, e.name) for e in from_a if e.name in ("start", "job_complete")
    ]


def test_last_event_id_resumes_on_another_server(cluster: PushdCluster, fleet: Fleet) -> None:
    a, b, c = cluster.servers
    wait_fleet_available(cluster, a, FLEET)
    before = c.stream("job_status_feed")  # the org feed's newest id before the job
    job = start_job(a, command=QUICK, nodes=list(FLEET))
    try:
        first = read_until(before, lambda e: e.name == "start")
    finally:
        before.close()
    assert (first[-1].data or {}).get("job") == job
    wait_finished(cluster, a, job)
    replay = a.stream(f"job_status_feed/{job}")
    try:
        whole = replay.rest(timeout=20)
    finally:
        replay.close()
    assert len(whole) >= 4, whole
    cut = len(whole) // 2
    resume = b.stream(f"job_status_feed/{job}", last_event_id=whole[cut - 1].id)
    try:
        resumed = resume.rest(timeout=20)
    finally:
        resume.close()
    assert ids_and_names(resumed) == ids_and_names(whole[cut:])
    # The org feed resumed on B from the `start` event C sent continues with the job's end.
    org = b.stream("job_status_feed", last_event_id=first[-1].id)
    try:
        rest = read_until(org, lambda e: e.name == "job_complete"
                          and (e.data or {}).get("job") == job, timeout=20)
    finally:
        org.close()
    assert [(e.id, e.name) for e in rest if (e.data or {}).get("job") == job] == [
        (e.id, e.name) for e in whole if e.name == "job_complete"
    ]


def doorbells(cluster: PushdCluster) -> list[str]:
    rows = cluster.sql(
        "SELECT application_name FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name LIKE %s",
        (DOORBELL_PREFIX + "%",),
    )
    return sorted(row[0] for row in rows)


def test_a_dropped_notify_connection_loses_no_command(
    cluster: PushdCluster, fleet: Fleet
) -> None:
    a = cluster.servers[0]
    wait_fleet_available(cluster, a, FLEET)
    expected = sorted(f"{DOORBELL_PREFIX}{s.member}" for s in cluster.servers)
    assert doorbells(cluster) == expected
    assert cluster.terminate_doorbells() == len(expected)
    # At once, before the brokers have listened again: the commands for the nodes held by B
    # and C go into their mailboxes while nobody listens.
    nodes = fleet.held_by(1) + fleet.held_by(2)
    job = start_job(a, command=QUICK, nodes=nodes)
    doc = wait_finished(cluster, a, job)
    assert doc["status"] == "complete", doc
    assert node_statuses(doc) == dict.fromkeys(nodes, "succeeded"), doc
    deadline = time.monotonic() + 20
    while doorbells(cluster) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert doorbells(cluster) == expected
    # And a job after the reconnection works as well.
    again = start_job(a, command=QUICK, nodes=list(FLEET))
    doc = wait_finished(cluster, a, again)
    assert node_statuses(doc) == dict.fromkeys(FLEET, "succeeded"), doc


# -- kill -9 of the coordinator (a cluster of its own) --------------------------------------


KILL_CLIENTS = tuple(f"node{i}" for i in range(9))
KILL_PEERS = tuple(f"stock{i}" for i in range(6))


def test_kill_9_of_the_coordinator_mid_job(tmp_path: Path) -> None:
    with running_cluster(size=3, nodes=KILL_CLIENTS + KILL_PEERS) as cluster:
        # Round robin again: two stock peers, then three pushd clients per server.
        peers = {node: cluster.peer(node, interval=0.5) for node in KILL_PEERS}
        clients = {node: cluster_client(cluster, tmp_path, node) for node in KILL_CLIENTS}
        try:
            for client in clients.values():
                client.start()
            placement = {n: cluster.server_of(p) for n, p in peers.items()}
            assert sorted(placement.values()) == [0, 0, 1, 1, 2, 2], placement
            clients_at = {n: wait_client_connected(cluster, c) for n, c in clients.items()}
            assert sorted(clients_at.values()) == [0, 0, 0, 1, 1, 1, 2, 2, 2], clients_at
            _kill_and_rejoin(cluster, clients, clients_at, peers, placement)
        finally:
            for client in clients.values():
                client.stop()


def _kill_and_rejoin(
    cluster: PushdCluster, clients: dict[str, ClientProcess], clients_at: dict[str, int],
    peers: dict[str, Any], peers_at: dict[str, int | None],
) -> None:
    by_server = {i: [n for n in KILL_CLIENTS if clients_at[n] == i] for i in range(3)}
    peers_by_server = {i: [n for n in KILL_PEERS if peers_at[n] == i] for i in range(3)}
    everyone = list(KILL_CLIENTS + KILL_PEERS)
    # Per server: the first client and both peers run the long job, the second client the job
    # posted to a survivor during the failure, the third the job the coordinator accepted just
    # before its end.
    busy = [by_server[i][0] for i in range(3)] + list(KILL_PEERS)
    a = cluster.servers[0]
    wait_fleet_available(cluster, a, everyone)
    job = start_job(a, command="sleep 8", nodes=busy)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # kill while every node runs the job
        if node_statuses(a.request("GET", f"jobs/{job}").json()) == dict.fromkeys(busy, "running"):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"{job} never ran\n{cluster.log_tails(40)}")
    coordinator = cluster.coordinator(job)
    assert coordinator is not None, "the job has no coordinator recorded"
    dead = cluster.index_of(coordinator)
    survivors = [i for i in range(3) if i != dead]
    survivor = cluster.servers[survivors[0]]
    last_nodes = [by_server[i][2] for i in survivors]
    last = start_job(cluster.servers[dead], command="sleep 1", nodes=last_nodes)
    cluster.kill(dead)

    # What the stock clients of the dead server do: fetch their config again through the one
    # URL. One is the same process, still running its job; the other was restarted meanwhile
    # and lost its run.
    keeper, loser = peers_by_server[dead]
    moved = [cluster.move(peers[keeper]), cluster.move(peers[loser], keep_job=False)]
    assert all(cluster.server_of(peer) in survivors for peer in moved)

    # A job posted during the failure to a survivor, over the survivors' idle nodes, runs.
    during_nodes = [by_server[i][1] for i in survivors]
    during = start_job(survivor, command=QUICK, nodes=during_nodes)
    doc = wait_finished(cluster, survivor, during, timeout=60)
    assert doc["status"] == "complete", doc
    assert node_statuses(doc) == dict.fromkeys(during_nodes, "succeeded"), doc

    # The killed coordinator's job is taken over and ends: complete, never stuck running;
    # re-attached nodes finish, the run that was lost is crashed.
    doc = wait_finished(cluster, cluster.servers[survivors[1]], job, timeout=60)
    assert doc["status"] == "complete", doc
    statuses = node_statuses(doc)
    held_by_survivors = [by_server[i][0] for i in survivors]
    held_by_survivors += peers_by_server[survivors[0]] + peers_by_server[survivors[1]]
    assert all(statuses[node] == "succeeded" for node in held_by_survivors), doc
    assert statuses[by_server[dead][0]] in ("succeeded", "crashed"), doc
    assert statuses[keeper] in ("succeeded", "crashed"), doc
    assert statuses[loser] == "crashed", doc
    assert cluster.coordinator(job) != coordinator
    # The job the dead server accepted last is not lost: it ends too (how depends on how far
    # it got: started by the member that took it over, crashed in its vote, or re-attached).
    doc = wait_finished(cluster, survivor, last, timeout=60)
    assert set(node_statuses(doc)) == set(last_nodes), doc

    # The dead server's nodes reconnected through HAProxy to the survivors.
    for node in by_server[dead]:
        assert wait_client_connected(cluster, clients[node], avoid=dead) in survivors
    for index in survivors:
        wait_fleet_available(cluster, cluster.servers[index], everyone)
    assert all(member != coordinator for member, _ in cluster.holders().values())
    assert coordinator not in cluster.live_members()
    assert coordinator not in {m["member"] for m in cluster.status(survivors[0])
                               if not m["expired"]}

    # It comes back and rejoins without an operator, and coordinates again.
    cluster.restart(dead)
    deadline = time.monotonic() + 20
    while coordinator not in cluster.live_members() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.live_members() == MEMBERS, cluster.members()
    cluster.wait_haproxy(dead, "UP")
    back = cluster.servers[dead]
    wait_fleet_available(cluster, back, everyone)
    final = start_job(back, command=QUICK, nodes=everyone)
    doc = wait_finished(cluster, back, final)
    assert node_statuses(doc) == dict.fromkeys(everyone, "succeeded"), doc
