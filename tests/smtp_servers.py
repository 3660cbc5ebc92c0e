"""SMTP servers (aiosmtpd) on 127.0.0.1 for the notify tests: a recording one, a stuck one, a self-signed cert."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.loopback import HOST, free_port


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


class StuckSMTP:
    """A TCP server on 127.0.0.1 that looks like an SMTP server that hangs, for deadline tests.

    Modes: "silent" accepts the connection and never sends the greeting; "trickle" sends the greeting one byte
    every `every` seconds, forever, so no single read ever waits long enough for a per-read socket timeout.
    `connections` counts the connections accepted; `stop()` closes everything.
    """

    def __init__(self, mode: str = "silent", every: float = 0.1) -> None:
        if mode not in ("silent", "trickle"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.every = every
        self.connections = 0
        self.connected_at: list[float] = []  #: monotonic time of each accepted connection
        self._stopped = threading.Event()
        self._sock = socket.socket()
        self._sock.bind((HOST, 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []

    def start(self) -> StuckSMTP:
        """Start accepting; returns self."""
        thread = threading.Thread(target=self._accept, name="stuck-smtp", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self.connected_at.append(time.monotonic())
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        greeting = b"220 stuck.example ESMTP " + b"x" * 100_000
        with conn:
            for byte in greeting:
                if self._stopped.wait(self.every if self.mode == "trickle" else 3600):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return  # the client hung up: what the deadline is for

    def stop(self) -> None:
        """Close the listening socket and every connection."""
        self._stopped.set()
        self._sock.close()
        for thread in self._threads:
            thread.join(5)


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
