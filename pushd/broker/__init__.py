"""The broker: the server's ZeroMQ side, node tracking and the job engine, in one process.

Run it with ``python -m pushd.broker --config FILE`` or `pushd.broker.startup.run_broker(settings)`;
API workers talk to it with `pushd.broker.control_mux.MultiplexedBrokerClient`, tools and tests
with `pushd.broker.control_client.BrokerClient` (no server-only imports).

    startup.py         run_broker(settings): the heartbeat first, then the rest
    early_start.py     EarlyStart: keys, Curve bindings, incarnation id, heartbeat, beacon
    heartbeat_publisher.py  HeartbeatPublisher: the server heartbeat's socket and message
    beacon.py          StartupBeacon: heartbeats from a thread while the broker loads
    service.py         Broker (the pyzmq loop and every other socket)
    config.py          BrokerConfig.from_settings(settings)
    control.py         the control ops: admit, start_job, abort_job, node_states, status
    control_client.py  BrokerClient, BrokerUnavailable, control_address(), events_address()
    control_mux.py     MultiplexedBrokerClient: one connection per gevent API worker
    nodes.py           NodeTracker: node sessions (rehab/idle), liveness, re-attach
    jobs.py            JobEngine: voting and running per the original's tables 4.3/4.4
    journal.py         StoreJournal: persist transitions and events, then publish them
    zap.py             Curve admission (ZAP) bound to (org, node)
    liveness.py        LivenessMonitor: per-node deadlines
    timers.py          TimerQueue, ManualClock
    contracts.py       NodeRef, JobSpec, Transition, FeedEvent, NodeOutput and the collaborator
                       protocols (Outbox, Journal, Scheduler)

This file imports nothing, so importing `pushd.broker.control_client` stays light.
"""
