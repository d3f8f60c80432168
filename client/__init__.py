"""push-jobs-client: the node agent (installed as `pushd_client`).

Modules: main (CLI), config (settings), agent (event loop and connection), configfetch (signed
REST config), runner (one job at a time), process (sessions and process groups), whitelist,
environment, jobfile, output (bounded capture), statefile (job record and status), backoff.
"""

__version__ = "0.1.0"
