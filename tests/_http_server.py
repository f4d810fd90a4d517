"""A small HTTP server on 127.0.0.1 for download tests, so no test touches the real network.

Each path serves a ``Route``: bytes with headers, Range requests answered with 206, and an
optional ``drop_after`` that sends part of the body and then closes the connection (a dropped
download). Every request is recorded, headers included, so tests can check caching and resume.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    drop_after: int | None = None  # body bytes to send before cutting the connection
    ranges: bool = True  # False: ignore Range headers, like some servers and proxies


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class LocalServer:
    """``with LocalServer() as server: server.routes["/f.zip"] = Route(data); server.url("/f.zip")``."""

    def __init__(self, not_found_headers: dict[str, str] | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        self.not_found_headers = not_found_headers or {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), daemon=True)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def requests_for(self, path: str) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.path == path]


def _handler_for(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self._serve(send_body=False)

        def do_GET(self) -> None:
            self._serve(send_body=True)

        def _serve(self, send_body: bool) -> None:
            server.record(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            route = server.routes.get(self.path)
            if route is None:
                self._reply(404, b"not found", dict(server.not_found_headers), send_body)
                return
            body, status, headers = route.body, route.status, dict(route.headers)
            wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if wanted and status == 200 and route.ranges:
                start = int(wanted[1])
                if start >= len(body):
                    self._reply(416, b"", {"Content-Range": f"bytes */{len(body)}"}, send_body)
                    return
                headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
                body, status = body[start:], 206
            self._reply(status, body, headers, send_body, route.drop_after)

        def _reply(
            self,
            status: int,
            body: bytes,
            headers: dict[str, str],
            send_body: bool,
            drop_after: int | None = None,
        ) -> None:
            self.send_response(status)
            headers.setdefault("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if send_body:
                self.wfile.write(body if drop_after is None else body[:drop_after])
            self.wfile.flush()
            self.close_connection = True  # a cut body then reads as a dropped connection

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    return Handler
