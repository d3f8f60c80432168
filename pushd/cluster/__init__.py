"""The cluster: several pushd servers on one PostgreSQL database (docs/architecture.md, "Cluster").

    doorbell.Doorbell   the broker's cluster thread (lease, LISTEN/NOTIFY, mailbox, take-over)
    mailer.Mailer       the thread writing mail and held-node changes
    relay.ClusterRelay  the loop's side: remote nodes and jobs coordinated elsewhere
"""
