"""The HTTP endpoints on the metrics port: /metrics, /healthz and /readyz.

/healthz: every running loop has beaten within its deadline (a stuck loop turns it 503).
/readyz: no loop reports not-ready (e.g. ingest without partitions while paused), the
database answers, and no dependency is known to be down (each one named with its reason).
Served by a small threaded server in a daemon thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from consumer.observability.dependencies import Dependencies
from consumer.observability.health import Heartbeats


def serve(  # noqa: PLR0917 - one call site, each argument a different thing to read
    port: int,
    registry: CollectorRegistry,
    heartbeats: Heartbeats,
    database_ok: Callable[[], bool],
    dependencies: Dependencies,
    host: str = "0.0.0.0",
) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; the caller shuts the server down."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                stale = heartbeats.stale()
                body: dict[str, object] = {
                    "status": "stuck" if stale else "ok",
                    "stale_loops": stale,
                }
                self._json(503 if stale else 200, body)
            elif self.path == "/readyz":
                waiting = heartbeats.not_ready()
                db = database_ok()
                down = dependencies.problems()
                ready = not waiting and db and not down
                status = {
                    "ready": ready,
                    "not_ready_loops": waiting,
                    "database": db,
                    "dependencies_down": down,
                }
                self._json(200 if ready else 503, status)
            else:
                self._send(404, b"not found\n", "text/plain")

        def _json(self, status: int, body: object) -> None:
            self._send(status, json.dumps(body).encode() + b"\n", "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds would drown the logs; stay quiet."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
