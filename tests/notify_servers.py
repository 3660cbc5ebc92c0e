"""The notify tests' local servers, re-exported from where they live: tests/telegram_server.py (the Telegram Bot API
stand-in), tests/smtp_servers.py (SMTP) and tests/loopback.py (the address and a free port). New code imports from
those modules; this one keeps older imports working.
"""

from __future__ import annotations

from tests.loopback import HOST, free_port
from tests.smtp_servers import Cert, Mail, RecordingHandler, StuckSMTP, make_cert, password_authenticator, start_smtp
from tests.telegram_server import NO_ANSWER, Received, Request, TelegramStandIn

__all__ = [
    "HOST",
    "NO_ANSWER",
    "Cert",
    "Mail",
    "Received",
    "RecordingHandler",
    "Request",
    "StuckSMTP",
    "TelegramStandIn",
    "free_port",
    "make_cert",
    "password_authenticator",
    "start_smtp",
]
