"""Real local servers for the notify tests: a Telegram Bot API stand-in (aiohttp) and SMTP servers (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --- Telegram ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """A message the stand-in accepted, with its monotonic arrival time."""

    chat_id: str
    text: str
    at: float


@dataclass(frozen=True)
class Request:
    """Any sendMessage request the stand-in saw (accepted or not), with its arrival time and the status answered."""

    at: float
    status: int


@dataclass(frozen=True)
class _Planned:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class TelegramStandIn:
    """POST /bot{token}/sendMessage on 127.0.0.1, in its own thread and event loop, recording what arrives."""

    def __init__(self, token: str, chats: tuple[str, ...] = ("42",)) -> None:
        self.token = token
        self.chats = set(chats)
        self.received: list[Received] = []
        self.requests: list[Request] = []
        #: Seconds to wait before answering, to make clients time out.
        self.delay = 0.0
        self._planned: deque[_Planned] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        """The URL to give TelegramChannel as base_url."""
        return f"http://{HOST}:{self.port}"

    def answer_next(
        self,
        status: int,
        count: int = 1,
        *,
        retry_after: int | None = None,
        header_only: bool = False,
        description: str | None = None,
    ) -> None:
        """Answer the next `count` requests with `status` (429 carries retry_after in JSON, or only in the header)."""
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description or f"Error {status}"}
        headers: dict[str, str] = {}
        if retry_after is not None:
            if header_only:
                headers["Retry-After"] = str(retry_after)
            else:
                body["parameters"] = {"retry_after": retry_after}
                body["description"] = f"Too Many Requests: retry after {retry_after}"
        with self._lock:
            self._planned.extend(_Planned(status, body, headers) for _ in range(count))

    async def _send_message(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        if request.match_info["token"] != self.token:
            return self._answer(at, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        try:
            payload = await request.json()
        except ValueError:
            return self._answer(at, 400, {"ok": False, "error_code": 400, "description": "Bad Request: invalid JSON"})
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            planned = self._planned.popleft() if self._planned else None
        if planned is not None:
            return self._answer(at, planned.status, planned.body, planned.headers)
        chat_id, text = str(payload.get("chat_id")), payload.get("text")
        if chat_id not in self.chats:
            return self._answer(at, 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
        if (
            not isinstance(text, str)
            or not text
            or len(text) > 4096
            or payload.get("disable_web_page_preview") is not True
        ):
            return self._answer(at, 400, {"ok": False, "error_code": 400, "description": "Bad Request: bad message"})
        with self._lock:
            self.received.append(Received(chat_id, text, at))
            message_id = len(self.received)
        return self._answer(at, 200, {"ok": True, "result": {"message_id": message_id, "text": text}})

    def _answer(
        self, at: float, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> web.Response:
        with self._lock:
            self.requests.append(Request(at, status))
        return web.json_response(body, status=status, headers=headers)

    def start(self) -> TelegramStandIn:
        """Start serving; returns self."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/bot{token}/sendMessage", self._send_message)
            # The access log would print each request path, token included (the real Telegram logs are not ours).
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, HOST, 0)
            await site.start()
            self.port = self._runner.addresses[0][1]

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            ready.set()
            self._loop.run_forever()
            assert self._runner is not None
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="telegram-stand-in", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Telegram stand-in did not start")
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


# --- SMTP -------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    """A message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    authenticated: bool
    tls: bool
    at: float

    @property
    def body(self) -> str:
        """The plain-text body, with the wire's CRLF line ends turned into newlines."""
        part = self.message.get_body(("plain",))
        assert part is not None
        return part.get_content().replace("\r\n", "\n")


class RecordingHandler:
    """An aiosmtpd handler that records accepted mail and can refuse RCPT or DATA, the first K times or always."""

    def __init__(self, *, refuse: str | None = None, phase: str = "RCPT", times: int | None = None) -> None:
        # `refuse` is the whole reply, e.g. "451 4.7.1 Greylisted"; times=None refuses every time.
        self.refuse = refuse
        self.phase = phase
        self.times = times
        self.refused = 0
        self.mails: list[Mail] = []

    def _refusal(self, phase: str) -> str | None:
        if self.refuse is None or phase != self.phase:
            return None
        if self.times is not None and self.refused >= self.times:
            return None
        self.refused += 1
        return self.refuse

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        """Accept the recipient unless told to refuse."""
        refusal = self._refusal("RCPT")
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Record the message unless told to refuse."""
        refusal = self._refusal("DATA")
        if refusal:
            return refusal
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        transport = server.transport
        tls = session.ssl is not None or (transport is not None and transport.get_extra_info("sslcontext") is not None)
        self.mails.append(
            Mail(
                envelope.mail_from, list(envelope.rcpt_tos), message, bool(session.authenticated), tls, time.monotonic()
            )
        )
        return "250 Message accepted for delivery"


def password_authenticator(login: str, password: str) -> Any:
    """An aiosmtpd authenticator accepting only this login and password."""

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (login.encode(), password.encode())
        return AuthResult(success=ok, handled=False)

    return authenticate


def start_smtp(handler: RecordingHandler, **kwargs: Any) -> Controller:
    """Start an aiosmtpd server on 127.0.0.1 (kwargs go to Controller/SMTP: tls_context, ssl_context, ...)."""
    controller = Controller(handler, hostname=HOST, port=free_port(), **kwargs)
    controller.start()
    return controller


@dataclass(frozen=True)
class Cert:
    """A self-signed certificate for 127.0.0.1 and localhost, made with the openssl CLI."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side TLS context with this certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client-side context that trusts only this certificate (and checks the host name)."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_cert(directory: Path) -> Cert:
    """Generate a self-signed EC certificate valid for IP 127.0.0.1 and DNS localhost."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Cert(cert, key)
