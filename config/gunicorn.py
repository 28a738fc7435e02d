"""gunicorn settings of the site (`make run` and deploy/galcat-web.service use this file).

    gunicorn -c config/gunicorn.py config.wsgi

Threaded workers (gthread): GALCAT_WEB_WORKERS processes of GALCAT_WEB_THREADS threads each
(defaults 3 and 4 on this 2-core machine: about 1.5 processes per core; threads cover the time a
request waits on PostgreSQL). Each process keeps a psycopg pool of at most as many database
connections as it has threads (config.database reads GALCAT_DB_POOL, set here), so the web
server holds at most workers x threads connections, however many clients connect: clients
beyond the threads wait in the listen backlog, they do not open connections to PostgreSQL.
"""

import os

bind = [f"{os.environ.get('GALCAT_HOST', '127.0.0.1')}:{os.environ.get('GALCAT_PORT', '8000')}"]
worker_class = "config.gunicorn_worker.BalancedThreadWorker"  # gthread, least-connections accepting
workers = int(os.environ.get("GALCAT_WEB_WORKERS", "3"))
threads = int(os.environ.get("GALCAT_WEB_THREADS", "4"))
# Client connections a worker holds at once (busy and idle keep-alive ones) and how long an idle
# one stays open (s). The worker class spreads clients over the workers (least connections,
# config/gunicorn_worker.py), so the cap only bounds one process's sockets (under the usual limit
# of 1,024 open files); clients beyond workers x this wait in the listen backlog.
worker_connections = int(os.environ.get("GALCAT_WEB_CONNECTIONS", "400"))
keepalive = int(os.environ.get("GALCAT_WEB_KEEPALIVE", "5"))
backlog = 2048
# A request running longer than this is killed with its worker (which gunicorn replaces).
timeout = int(os.environ.get("GALCAT_WEB_TIMEOUT", "120"))
graceful_timeout = 20
# Replace each worker after about this many requests (jittered), bounding slow leaks. Not much
# fewer: at the 4,000-5,000 req/s of cached pages, 20,000 replaced a worker every 12-15 s, and
# each replacement (Django booting, its clients reconnecting) put 0.6-1.3 s into the p99 of the
# /galaxies/ page (67 ms with 200,000, bench/load_bench.py --only reads, 20 keep-alive clients).
max_requests = int(os.environ.get("GALCAT_WEB_MAX_REQUESTS", "200000"))
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("GALCAT_WEB_ACCESS_LOG") or None  # e.g. "-" for stdout
errorlog = "-"
loglevel = os.environ.get("GALCAT_WEB_LOG_LEVEL", "info")
proc_name = "galcat-web"
control_socket_disable = True  # gunicorn 24+: one fixed socket path would clash between sites
# The application is loaded in each worker after the fork: every process opens its own pool.
preload_app = False
os.environ["GALCAT_DB_POOL"] = str(threads)


def child_exit(server, worker) -> None:
    """gunicorn hook, in the master after a worker exited: free its slot of the balance table."""
    from config.gunicorn_worker import release_slot

    release_slot(worker.pid)
