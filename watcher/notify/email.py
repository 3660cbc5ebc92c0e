"""E-mail channel: one message per alert through an SMTP server (STARTTLS, implicit TLS or plain), via smtplib."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import smtplib
import socket
import ssl
import threading
from email.message import EmailMessage
from email.utils import formatdate
from typing import Literal

from watcher.notify.base import Message, PermanentFailure, TemporaryFailure, log, redact, render_text

Security = Literal["starttls", "ssl", "none"]
_SECURITY = ("starttls", "ssl", "none")


class EmailChannel:
    """Sends each message to every recipient; SMTP 4xx and connection trouble are temporary, 5xx permanent."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: list[str],
        *,
        username: str | None = None,
        password: str | None = None,
        security: Security = "starttls",
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in _SECURITY:
            raise ValueError(f"email: security must be one of {', '.join(_SECURITY)}, not {security!r}")
        if not recipients:
            raise ValueError("email: at least one recipient is needed")
        if password is not None and username is None:
            raise ValueError("email: a password needs a username")
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = list(recipients)
        self.username = username
        self._password = password
        self.security = security
        self.timeout = timeout
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        return (
            f"EmailChannel(host={self.host!r}, port={self.port}, sender={self.sender!r}, "
            f"recipients={self.recipients!r}, security={self.security!r})"
        )

    async def send(self, msg: Message) -> None:
        """Send `msg` to the recipients in a worker thread, the whole SMTP conversation within `timeout` seconds."""
        conversation = _Conversation()
        try:
            work = asyncio.to_thread(self._send_blocking, self._compose(msg), conversation)
            await asyncio.wait_for(work, self.timeout)
        except TimeoutError:
            # The socket timeout bounds each read, not the conversation: a server that answers a byte at a time keeps
            # it going. Shutting the socket down ends the thread's blocking call now, instead of leaving it stuck.
            conversation.abort()
            raise TemporaryFailure("email: timed out") from None

    async def close(self) -> None:
        """Nothing to release: every send uses its own SMTP connection."""

    def _compose(self, msg: Message) -> EmailMessage:
        mail = EmailMessage()
        # A line break in a header would be refused by the email package (and is how header injection works).
        mail["Subject"] = " ".join(msg.subject.split())
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        mail["Date"] = formatdate(localtime=True)
        # The same Message-ID for a re-sent copy lets mail clients fold the duplicate away.
        digest = hashlib.sha256(f"{msg.alert_id}\0{msg.subject}\0{msg.text}".encode()).hexdigest()[:32]
        domain = self.sender.rpartition("@")[2].strip("<> ") or "margin-watcher.invalid"
        mail["Message-ID"] = f"<{digest}@{domain}>"
        mail["X-Margin-Watcher-Ref"] = " ".join(msg.alert_id.split())
        mail.set_content(render_text(msg))
        return mail

    def _send_blocking(self, mail: EmailMessage, conversation: _Conversation | None = None) -> None:
        context = self._ssl_context or ssl.create_default_context()
        conversation = conversation or _Conversation()
        # Every failure becomes one of ours, raised `from None`: smtplib's exceptions carry server replies, and a
        # chained traceback must not be where a secret slips out.
        try:
            if self.security == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(timeout=self.timeout, context=context)
            else:
                client = smtplib.SMTP(timeout=self.timeout)
            # Connected here rather than by the constructor, so the deadline can cut even the greeting short.
            # smtplib sets the TLS server name (_host) only in the constructor: set it as the constructor would.
            client._host = self.host
            conversation.client = client
            code, greeting = client.connect(self.host, self.port)
            if code != 220:
                client.close()
                raise smtplib.SMTPConnectError(code, greeting)
            if conversation.aborted.is_set():
                # The deadline passed while connecting: the attempt already counts as failed, so do not send now.
                client.close()
                raise TemporaryFailure("email: timed out")
            with client:
                client.ehlo()
                if self.security == "starttls":
                    if not client.has_extn("starttls"):
                        # Sending the password (or the alert) in clear instead is not a fallback we make silently.
                        raise PermanentFailure("email: the server does not offer STARTTLS")
                    client.starttls(context=context)
                    client.ehlo()
                if self.username is not None:
                    client.login(self.username, self._password or "")
                refused = client.send_message(mail, from_addr=self.sender, to_addrs=self.recipients)
        except (PermanentFailure, TemporaryFailure):
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            detail = "; ".join(f"{rcpt}: {self._reply(code, text)}" for rcpt, (code, text) in exc.recipients.items())
            if any(400 <= code < 500 for code, _ in exc.recipients.values()):
                raise TemporaryFailure(f"email: recipients refused: {detail}") from None
            raise PermanentFailure(f"email: recipients refused: {detail}") from None
        except smtplib.SMTPResponseException as exc:
            reply = self._reply(exc.smtp_code, exc.smtp_error)
            if 500 <= exc.smtp_code < 600:
                raise PermanentFailure(f"email: {reply}") from None
            raise TemporaryFailure(f"email: {reply}") from None
        except smtplib.SMTPNotSupportedError:
            # STARTTLS is checked above, so this is login(): most servers offer AUTH only once the connection is TLS.
            raise PermanentFailure("email: the server offers no AUTH on this connection (security='none'?)") from None
        except smtplib.SMTPServerDisconnected:
            raise TemporaryFailure("email: the server closed the connection") from None
        except ssl.SSLCertVerificationError as exc:
            # A certificate that does not verify is a configuration problem, not something a retry fixes.
            raise PermanentFailure(f"email: TLS certificate not trusted ({exc.verify_message})") from None
        except TimeoutError:
            raise TemporaryFailure("email: timed out") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(f"email: connection failed ({type(exc).__name__})") from None
        if refused:
            # The others got it: raising would make a retry send them a duplicate, so report and carry on.
            detail = "; ".join(f"{rcpt}: {self._reply(code, text)}" for rcpt, (code, text) in refused.items())
            log.warning("email: some recipients refused the message: %s", detail)

    def _reply(self, code: int, text: bytes | str) -> str:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        text = " ".join(text.split())
        return redact(f"{code} {text}", self._password)[:500]


class _Conversation:
    """The SMTP client a worker thread is using, so the event loop can cut its connection at the deadline."""

    def __init__(self) -> None:
        self.client: smtplib.SMTP | None = None
        self.aborted = threading.Event()

    def abort(self) -> None:
        """Shut the connection down: a recv or send blocked in the worker thread returns at once with an error."""
        self.aborted.set()
        client = self.client
        sock = getattr(client, "sock", None) if client is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)
