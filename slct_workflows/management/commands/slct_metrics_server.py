"""Serve a host's worker metrics to Prometheus, for hosts that run workers and no web server.

The workers write their step counters and histograms to PROMETHEUS_MULTIPROC_DIR; this command
serves that directory's sum at /metrics, protected like the web server's endpoint
(SLCT_METRICS_TOKEN and/or SLCT_METRICS_ALLOW; 403 to everyone with neither set). The database
and Redis gauges are global and come from the web server's /metrics; --with-runtime adds them
here too (then scrape only one host for them, or they are counted once per host).
"""
from __future__ import annotations

import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from slct_workflows import conf

from slct_workflows.read import metrics


class Command(BaseCommand):
    help = "Serve this host's worker metrics (PROMETHEUS_MULTIPROC_DIR) at /metrics, protected like the web endpoint."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=9108, help="TCP port (default 9108)")
        parser.add_argument("--addr", default="0.0.0.0", help="address to listen on (default all interfaces)")
        parser.add_argument("--with-runtime", action="store_true",
                            help="also serve the database and Redis gauges (normally the web server's)")

    def handle(self, *args, port: int, addr: str, with_runtime: bool, **options):
        if metrics.prometheus_client is None:
            raise CommandError("prometheus_client is not installed")
        try:
            path = conf.metrics_multiproc_dir()
            token, allow = conf.metrics_token(), conf.metrics_allow()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if not path:
            raise CommandError(
                "PROMETHEUS_MULTIPROC_DIR is not set: the workers' metrics live in their own processes. Set it "
                "(the same directory for every worker of this host) and restart the workers."
            )
        if not token and not allow:
            self.stderr.write("neither SLCT_METRICS_TOKEN nor SLCT_METRICS_ALLOW is set: every scrape gets 403")

        server = ThreadingHTTPServer((addr, port), _handler(with_runtime))
        server.daemon_threads = True
        stop = threading.Event()

        def shutdown(*_):
            if not stop.is_set():
                stop.set()
                threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, shutdown)
        signal.signal(signal.SIGINT, shutdown)
        host, bound_port = server.server_address[:2]
        self.stdout.write(f"serving {path} at http://{host}:{bound_port}/metrics")
        self.stdout.flush()
        try:
            server.serve_forever(poll_interval=0.5)
        finally:
            server.server_close()


def _handler(with_runtime: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "slct-metrics"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?", 1)[0].rstrip("/") not in ("", "/metrics"):
                return self._send(404, b"not found\n", "text/plain; charset=utf-8")
            try:
                allowed, why = metrics.scrape_allowed(self.headers.get("Authorization"), self.client_address[0])
            except ImproperlyConfigured as exc:
                return self._send(500, f"{exc}\n".encode(), "text/plain; charset=utf-8")
            if not allowed:
                return self._send(403, f"{why}\n".encode(), "text/plain; charset=utf-8")
            try:
                body, content_type = metrics.render(self.headers.get("Accept", ""), runtime=with_runtime)
            finally:
                if with_runtime:
                    from django.db import connections

                    connections.close_all()  # this thread's connection ends with the request
            self._send(200, body, content_type)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # quiet: Prometheus scrapes every few seconds
            pass

    return Handler
