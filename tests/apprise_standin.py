"""A local stand-in for the services apprise posts to (its `json://` and `ntfy://` plugins), with fault modes."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Post:
    """One POST the stand-in accepted: its path, JSON body, headers and monotonic arrival time."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float

    @property
    def text(self) -> str:
        """The message text apprise sent (both plugins put it under "message")."""
        return str(self.body.get("message", ""))


class HookStandIn:
    """POSTs on 127.0.0.1, in a thread: records each accepted one in `posts`, every attempt in `attempts`.

    Faults (each for the requests that arrive while it holds):
    - `down(seconds, status=503)`: an outage; every request gets `status`.
    - `refuse_all(status=403)`: a permanent refusal, until `clear()`.
    - `hang(seconds)`: every request waits `seconds` before it is answered (a service that hangs).
    """

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.attempts: list[tuple[float, int]] = []  #: (arrival, status answered)
        self._down_until = float("-inf")
        self._down_status = 503
        self._refuse: int | None = None
        self._hang = 0.0
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                stand_in._handle(self)

            def log_message(self, *args: Any) -> None:
                pass  # the path may be a topic; the tests read `posts`

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="hook-stand-in", daemon=True)

    def json_url(self, path: str = "hook", auth: str = "") -> str:
        """An apprise json:// URL to this stand-in."""
        return f"json://{auth}{HOST}:{self.port}/{path}"

    def ntfy_url(self, topic: str = "alerts") -> str:
        """An apprise ntfy:// URL to this stand-in (a self-hosted ntfy over http)."""
        return f"ntfy://{HOST}:{self.port}/{topic}"

    def down(self, seconds: float, status: int = 503) -> None:
        """Answer every request with `status` for `seconds` from now."""
        with self._lock:
            self._down_until, self._down_status = time.monotonic() + seconds, status

    def refuse_all(self, status: int = 403) -> None:
        """Answer every request with `status` until clear()."""
        with self._lock:
            self._refuse = status

    def hang(self, seconds: float) -> None:
        """Hold every request `seconds` before answering it."""
        with self._lock:
            self._hang = seconds

    def clear(self) -> None:
        """End every fault."""
        with self._lock:
            self._down_until, self._refuse, self._hang = float("-inf"), None, 0.0

    def texts(self, path: str | None = None) -> list[str]:
        """The message texts accepted (on `path`, if given), in order."""
        with self._lock:
            return [p.text for p in self.posts if path is None or p.path == path]

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        at = time.monotonic()
        raw = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        with self._lock:
            hang, refuse = self._hang, self._refuse
            status = self._down_status if at < self._down_until else (refuse or 200)
        if hang:
            time.sleep(hang)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body, status = {}, 400
        with self._lock:
            self.attempts.append((at, status))
            if status == 200:
                self.posts.append(Post(req.path, body, dict(req.headers), at))
        # ntfy's own error body (its plugin logs `code`, e.g. 40301, not the HTTP status); the json plugin ignores it.
        doc = {"ok": True} if status == 200 else {"code": status * 100 + 1, "http": status, "error": "refused"}
        answer = json.dumps(doc).encode()
        try:
            req.send_response(status)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(answer)))
            req.end_headers()
            req.wfile.write(answer)
        except OSError:
            pass  # the client gave up (its timeout): what `hang` is for

    def start(self) -> HookStandIn:
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
