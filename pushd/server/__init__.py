"""The service's main process: gunicorn (gevent workers serving pushd.api) plus the broker.

    python -m pushd.server --config FILE
    pushd.server.main.main(argv=None) -> int
    pushd.server.supervisor.BrokerSupervisor      restarts the broker subprocess when it dies
    pushd.server.wsgi.build_worker_app(settings)  the app as a worker builds it
"""
