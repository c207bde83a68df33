"""Gunicorn settings for the reference app: the one place their defaults live.

Knobs (environment variables, with defaults):
  GUNICORN_BIND                 0.0.0.0:8000
  GUNICORN_WORKERS              1          sized from the replica's CPU budget by
                                           whoever starts it, never from host cores
  GUNICORN_WORKER_CLASS         gthread
  GUNICORN_THREADS              4
  GUNICORN_FORWARDED_ALLOW_IPS  127.0.0.1  the proxy allowed to set X-Forwarded-*
  GUNICORN_APP                  refapp:create_app()  the WSGI app (hscale's APP_MODULE)
  GUNICORN_CHDIR                this file's directory  where that app is imported from

Run as ``gunicorn -c app/gunicorn.conf.py`` from any directory (``--chdir app`` and
cwd=app work too); the app itself reads ``APP_*`` variables (see refapp/config.py).
"""

import os


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise SystemExit(f"{name} must be a positive integer, got {raw!r}")
    return value


bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = _env_int("GUNICORN_WORKERS", 1)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = _env_int("GUNICORN_THREADS", 4)
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")

wsgi_app = os.environ.get("GUNICORN_APP") or "refapp:create_app()"
# Import the app from this file's directory (or GUNICORN_CHDIR: your project) whatever the
# cwd (gunicorn puts chdir on sys.path); a --chdir on the command line still overrides it.
chdir = os.environ.get("GUNICORN_CHDIR") or os.path.dirname(os.path.abspath(__file__))

# Workers touch their heartbeat file constantly; on a disk-backed /tmp (container
# overlay filesystems) that can block and get healthy workers killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# No worker recycling while measuring: a restart mid-run is a latency spike and a
# cold pool that the benchmark would wrongly attribute to load.
max_requests = 0
# Longer than nginx's upstream keepalive_timeout (60 s), so nginx always closes an
# idle upstream connection first and never reuses one gunicorn is closing.
keepalive = 75
# SIGTERM: finish in-flight requests for up to 10 s, then exit.
graceful_timeout = 10
# Kill a worker silent for 30 s (above WORK_MAX_MS and the store timeouts).
timeout = 30
# No access log: a line per request would spend the very CPU budget being measured.
accesslog = None
errorlog = "-"
loglevel = "warning"
# gunicorn >= 25.1 opens a control socket at one per-user default path; replicas
# sharing a host would fight over it, and nothing here uses gunicornc.
control_socket_disable = True
