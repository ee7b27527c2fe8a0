"""HTTP/1.1 plumbing around :class:`~tripwire.gateway.core.Gateway` (standard library).

``ThreadingHTTPServer`` with keep-alive: one thread per connection, Nagle's algorithm
off (a response is written as headers then body; with Nagle and delayed ACKs the body
would wait ~40 ms). Bodies over the size limit are refused with 413 before they are
read, and the connection is closed.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tripwire.gateway.core import Gateway, Response
from tripwire.gateway.protocol import error_body

log = logging.getLogger("tripwire.gateway")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tripwire-gateway"
    sys_version = ""
    disable_nagle_algorithm = True
    gateway: Gateway  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, resp: Response, *, close: bool = False) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def _dispatch(self) -> None:
        gw = self.gateway
        length_text = self.headers.get("Content-Length")
        body = b""
        if length_text is not None:
            try:
                length = int(length_text)
                if length < 0:
                    raise ValueError
            except ValueError:
                self._refuse(400, "invalid Content-Length", "bad_length")
                return
            if length > gw.config.max_body_bytes:
                self._refuse(
                    413, f"the body exceeds {gw.config.max_body_bytes} bytes", "body_too_large"
                )
                return
            body = self.rfile.read(length)
        elif self.command == "POST":
            if self.headers.get("Transfer-Encoding"):
                self._refuse(
                    411, "chunked bodies are not supported: send Content-Length", "no_length"
                )
            else:
                self._refuse(411, "a POST needs Content-Length", "no_length")
            return
        resp = gw.handle(self.command, self.path, self.headers, body, self.client_address[0])
        self._send(resp, close=resp.close)

    def _refuse(self, status: int, message: str, reason: str) -> None:
        gw = self.gateway
        gw.metrics.inc("tripwire_bad_requests_total", "Requests refused, by reason.", reason=reason)
        gw.metrics.inc(
            "tripwire_requests_total",
            "HTTP requests answered, by route and status.",
            route="other",
            code=str(status),
        )
        log.info("refused %s %s: %d %s", self.command, self.path[:100], status, message)
        # The unread body would be parsed as the next request: close the connection.
        self._send(Response(status, error_body(message)), close=True)

    do_GET = _dispatch  # noqa: N815 - the names http.server dispatches to
    do_POST = _dispatch  # noqa: N815 - the names http.server dispatches to
    do_HEAD = _dispatch  # noqa: N815 - the names http.server dispatches to

    def _not_allowed(self) -> None:
        self._refuse(405, f"method {self.command} is not supported", "bad_method")

    do_PUT = _not_allowed  # noqa: N815
    do_DELETE = _not_allowed  # noqa: N815
    do_PATCH = _not_allowed  # noqa: N815


class _Server(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


class GatewayServer:
    """Bind a gateway to ``host:port`` (``port`` 0 picks a free one) and serve it.

    Raises
    ------
    OSError
        The address cannot be bound.
    """

    def __init__(self, gateway: Gateway, host: str = "127.0.0.1", port: int = 8080) -> None:
        handler = type("Handler", (_Handler,), {"gateway": gateway})
        self.gateway = gateway
        self.httpd = _Server((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://{host!s}:{self.port}"

    def start(self) -> GatewayServer:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self.httpd.serve_forever(poll_interval=0.5)

    def stop(self) -> None:
        """Stop serving, write client states and queued logs (the store stays open)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        # Keep-alive connections outlive the listening socket: the gateway refuses their
        # further requests and waits for those in flight before writing the states.
        self.gateway.close()
        if self._thread is not None:
            self._thread.join(timeout=10)


__all__ = ["GatewayServer"]
