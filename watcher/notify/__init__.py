"""Alert delivery: channels (Telegram, e-mail), a durable SQLite outbox and the relay that drains it."""

from watcher.notify.base import Channel, Message, PermanentFailure, TemporaryFailure
from watcher.notify.email import EmailChannel
from watcher.notify.outbox import OutboxRow, enqueue, ensure_schema, severity_rank
from watcher.notify.relay import Relay, RelayReport
from watcher.notify.telegram import TelegramChannel

__all__ = [
    "Channel",
    "EmailChannel",
    "Message",
    "OutboxRow",
    "PermanentFailure",
    "Relay",
    "RelayReport",
    "TelegramChannel",
    "TemporaryFailure",
    "enqueue",
    "ensure_schema",
    "severity_rank",
]
