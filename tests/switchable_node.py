"""A JSON-RPC node that can be switched off: a forwarder to anvil on 127.0.0.1 that answers 503 while `down`."""

from __future__ import annotations

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SwitchableNode:
    """A JSON-RPC forwarder to anvil on 127.0.0.1 that answers HTTP 503 while `down` is set: a node that breaks."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.down = False
        self.requests = 0
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                node.requests += 1
                if node.down:
                    status, answer = 503, b'{"error": "down"}'
                else:
                    req = urllib.request.Request(node.upstream, data=body, headers={"Content-Type": "application/json"})
                    try:
                        with urllib.request.urlopen(req, timeout=30) as resp:
                            status, answer = resp.status, resp.read()
                    except OSError:
                        status, answer = 502, b'{"error": "upstream"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The URL to put in rpc_urls."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> SwitchableNode:
        """Serve in a thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
