"""A real HTTP server on 127.0.0.1 that serves files and injects faults, for testing downloaders.

Each route has a *script*: the fault for its 1st, 2nd, ... request, then a default for the rest. Every request is
logged (time, method, headers, fault), so a test checks how a client behaved (retries, ``Retry-After`` waits,
``Range`` resumes), not only the end result:

    with FaultServer() as server:
        server.add("/v.mp4", body, script=[Fault.status_code(500), Fault.status_code(500)])  # then OK
        download(server.url("/v.mp4"))
        assert len(server.log("/v.mp4")) == 3

``OK`` honours single ``Range: bytes=a-b`` requests (206), as file servers do. The faults are ``Fault``'s
classmethods; ``block(fault)`` applies one to every route, as a site does when it flags a client (a 429 storm, a
bot-check page, a sign-in 403), until ``block(None)``.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclasses.dataclass(frozen=True)
class Fault:
    """What to do with one request. Build with the classmethods."""

    kind: str  # ok | status | drop | stall | stall_body | redirect_loop
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    fraction: float = 0.5  # drop, stall_body: share of the body sent before the connection is cut / goes quiet
    seconds: float = 0.0  # stall, stall_body: how long to hold the connection without sending more
    body: bytes = b""  # status: the page sent with it (default "status N")

    @classmethod
    def ok(cls) -> Fault:
        return cls("ok")

    @classmethod
    def status_code(cls, status: int, **headers: str) -> Fault:
        return cls("status", status=status, headers=tuple((k.replace("_", "-"), v) for k, v in headers.items()))

    @classmethod
    def too_many_requests(cls, retry_after: str = "1") -> Fault:
        return cls.status_code(429, Retry_After=retry_after)

    @classmethod
    def bot_check(cls) -> Fault:
        """YouTube's bot-check refusal as a page: 403 with the text yt-dlp users meet at scale."""
        return dataclasses.replace(cls.status_code(403), body=b"<html><body>Sign in to confirm you're not a bot. "
                                                              b"This helps protect our community.</body></html>")

    @classmethod
    def sign_in_403(cls) -> Fault:
        """A stream URL refused to a client that is not signed in: a bare 403."""
        return dataclasses.replace(cls.status_code(403), body=b"Sign in to watch this video\n")

    @classmethod
    def drop(cls, fraction: float = 0.5) -> Fault:
        """Announce the full Content-Length, send ``fraction`` of the body, then close the connection."""
        return cls("drop", fraction=fraction)

    @classmethod
    def stall(cls, seconds: float = 10.0) -> Fault:
        """Accept the request and send nothing for ``seconds`` (or until the server stops)."""
        return cls("stall", seconds=seconds)

    @classmethod
    def stall_body(cls, fraction: float = 0.5, seconds: float = 10.0) -> Fault:
        """Send the headers (full Content-Length) and ``fraction`` of the body, then go quiet for ``seconds``.

        The case a read timeout exists for: the transfer started (so a connect timeout or a missing response
        does not cover it) and the server stopped sending mid-body without closing the connection.
        """
        return cls("stall_body", fraction=fraction, seconds=seconds)

    @classmethod
    def redirect_loop(cls) -> Fault:
        """302 to the same path with a changing query, forever."""
        return cls("redirect_loop", status=302)


@dataclasses.dataclass
class Route:
    body: bytes
    content_type: str
    script: list[Fault]
    then: Fault


@dataclasses.dataclass(frozen=True)
class LoggedRequest:
    time: float  # time.monotonic() when the request arrived
    method: str
    path: str
    headers: dict[str, str]
    fault: str  # Fault.kind (with the status for status faults)


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up early (probes, timeouts) are part of the tests, not server errors."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass


class FaultServer:
    """Threaded HTTP server bound to an ephemeral port on 127.0.0.1; a context manager."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._block: Fault | None = None
        self._httpd = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fault-server", daemon=True)

    # ---- configuration -------------------------------------------------------------------------------
    def add(self, path: str, body: bytes = b"", *, content_type: str = "video/mp4",
            script: list[Fault] | tuple[Fault, ...] = (), then: Fault | None = None) -> str:
        """Serve ``body`` at ``path``; apply ``script`` to the first requests, then ``then`` (default OK)."""
        with self._lock:
            self._routes[path] = Route(body, content_type, list(script), then or Fault.ok())
        return self.url(path)

    def block(self, fault: Fault | None) -> None:
        """Answer every request on every route with ``fault`` (None: serve the routes' scripts again)."""
        with self._lock:
            self._block = fault

    def url(self, path: str) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def log(self, path: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self._log if path is None or r.path == path]

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- request handling ------------------------------------------------------------------------------
    def _next_fault(self, path: str, method: str, headers: dict[str, str]) -> tuple[Route | None, Fault]:
        with self._lock:
            route = self._routes.get(path)
            if route is None:
                fault = Fault.status_code(404)
            elif self._block is not None:
                fault = self._block
            else:
                fault = route.script.pop(0) if route.script else route.then
            label = f"{fault.kind}:{fault.status}" if fault.kind == "status" else fault.kind
            self._log.append(LoggedRequest(time.monotonic(), method, path, headers, label))
            return route, fault

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _serve(self, head: bool) -> None:
                path = self.path.split("?", 1)[0]
                if path.startswith("http://"):  # absolute form: this server is being used as an HTTP proxy
                    path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
                route, fault = server._next_fault(path, self.command, dict(self.headers.items()))
                if fault.kind == "stall":
                    server._stopping.wait(fault.seconds)
                    self.close_connection = True
                    return
                if fault.kind == "redirect_loop":
                    self.send_response(302)
                    self.send_header("Location", f"{path}?hop={time.monotonic_ns()}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault.kind == "status" or route is None:
                    self._send_status(fault)
                    return
                body = route.body
                start, end, status = 0, len(body) - 1, 200
                match = _RANGE.match(self.headers.get("Range", ""))
                if match and body:
                    start = int(match.group(1))
                    end = min(int(match.group(2) or end), len(body) - 1)
                    if start > end:
                        self._send_status(Fault.status_code(416, Content_Range=f"bytes */{len(body)}"))
                        return
                    status = 206
                chunk = body[start:end + 1]
                self.send_response(status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(chunk)))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
                self.end_headers()
                if head:
                    return
                if fault.kind == "drop":
                    self.wfile.write(chunk[: int(len(chunk) * fault.fraction)])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # cut the connection mid-body
                    return
                if fault.kind == "stall_body":
                    try:
                        self.wfile.write(chunk[: int(len(chunk) * fault.fraction)])
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    server._stopping.wait(fault.seconds)  # connection open, nothing more sent
                    self.close_connection = True
                    return
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):  # a client that read only a prefix (a probe)
                    self.close_connection = True

            def _send_status(self, fault: Fault) -> None:
                body = fault.body or f"status {fault.status}\n".encode()
                self.send_response(fault.status)
                for key, value in fault.headers:
                    self.send_header(key, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        return Handler
