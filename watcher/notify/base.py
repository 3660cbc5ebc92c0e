"""The message, the two ways a send can fail, and the protocol every delivery channel follows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

#: Every module of the package logs here, so one logger configures all alert delivery.
log = logging.getLogger("watcher.notify")


@dataclass(frozen=True)
class Message:
    """One alert to deliver: `alert_id` is the alert event's stable id, shown in every copy sent."""

    alert_id: str
    subject: str
    text: str
    #: A line the relay adds (how many updates were folded into this one); sent before the ref line, never cut.
    note: str | None = None


class TemporaryFailure(Exception):
    """The send did not happen but may succeed later; `retry_after` is the wait the service asked for, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentFailure(Exception):
    """The send was refused and retrying the same message will not help (bad address, bad credentials, ...)."""


class Channel(Protocol):
    """A way to deliver a message; `send` returns once the service accepted it, or raises one of the failures."""

    name: str

    async def send(self, msg: Message) -> None:
        """Deliver `msg`, raising TemporaryFailure or PermanentFailure if it was not accepted."""
        ...


def ref_line(alert_id: str) -> str:
    """The last line of every message sent, so a duplicate delivery is recognisable as the same alert."""
    return f"ref: {alert_id}"


def render_text(msg: Message, limit: int | None = None) -> str:
    """The text to send: the text, the relay's note and the ref line, the text cut if needed to fit in `limit`."""
    ref = ref_line(msg.alert_id)
    text = msg.text.rstrip()
    # A caller that already wrote the ref line must not get it twice.
    if text.endswith(ref):
        text = text[: -len(ref)].rstrip()
    tail = f"{msg.note}\n{ref}" if msg.note else ref
    tail = f"\n\n{tail}" if text else tail
    if limit is not None and len(text) + len(tail) > limit:
        # Cut the text, never the ref: without it a duplicate could not be recognised.
        text = text[: max(0, limit - len(tail) - 1)].rstrip() + "…"
    return text + tail


def redact(text: str, *secrets: str | None) -> str:
    """`text` with every non-empty secret replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
