"""Telegram Bot API channel: sendMessage to one chat, paced to about one message per second."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from typing import Any

import aiohttp

from watcher.notify.base import Message, PermanentFailure, TemporaryFailure, redact, render_text

#: Telegram refuses longer texts ("message is too long").
MAX_TEXT = 4096
#: Telegram's answer to sendMessage is a few kB; anything far larger is not Telegram and is not read into memory.
MAX_ANSWER_BYTES = 1_000_000


class TelegramChannel:
    """Sends each message to one chat through a bot; the token is part of every request URL, so it never leaves here."""

    name = "telegram"

    def __init__(
        self,
        token: str,
        chat_id: str,
        *,
        base_url: str = "https://api.telegram.org",
        min_interval: float = 1.0,
        timeout: float = 10.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._token = token
        self.chat_id = str(chat_id)
        self._base_url = base_url.rstrip("/")
        self.min_interval = min_interval
        #: seconds for one whole request: connecting, sending, the headers and the whole answer
        self.timeout = timeout
        self.max_answer_bytes = max_answer_bytes
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout, sock_read=timeout)
        self._session = session
        self._own_session = session is None
        self._lock: asyncio.Lock | None = None
        # Monotonic times: the last request to the chat, and the end of a flood wait Telegram imposed (429).
        self._last_request = float("-inf")
        self._blocked_until = float("-inf")

    def __repr__(self) -> str:
        return f"TelegramChannel(chat_id={self.chat_id!r}, base_url={self._base_url!r})"

    async def send(self, msg: Message) -> None:
        """Send `msg` to the chat, waiting first if the previous message to it went out less than min_interval ago."""
        await self.send_text(self.chat_id, render_text(msg, MAX_TEXT))

    async def send_text(self, chat_id: str, text: str) -> None:
        """Send plain `text` (a command's reply, no ref line) to `chat_id`, paced and flood-waited like alerts."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        # One request at a time per chat: concurrent callers would otherwise both pass the pacing check.
        async with self._lock:
            now = time.monotonic()
            if now < self._blocked_until:
                # Asking again during a flood wait only makes Telegram extend it.
                remaining = self._blocked_until - now
                raise TemporaryFailure(f"telegram: rate limited, retry in {remaining:.1f} s", retry_after=remaining)
            wait = self._last_request + self.min_interval - now
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_request = time.monotonic()
            payload = {"chat_id": str(chat_id), "text": text[:MAX_TEXT], "disable_web_page_preview": True}
            try:
                await self.request("sendMessage", payload)
            except TemporaryFailure as exc:
                # Only a 429 carries retry_after: the flood wait holds every later send, alert or reply.
                if exc.retry_after is not None:
                    self._blocked_until = time.monotonic() + exc.retry_after
                raise

    async def close(self) -> None:
        """Close the HTTP session if this channel created it."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, payload: dict[str, Any], *, deadline: float | None = None) -> Any:
        """One Bot API call (no pacing): its `result`, or TemporaryFailure / PermanentFailure with a redacted text.

        `deadline` (seconds for the whole exchange) defaults to the channel's timeout; a long poll passes more.
        """
        if self._session is None:
            self._session = aiohttp.ClientSession()
        total = self.timeout if deadline is None else deadline
        client_timeout = (
            self._timeout
            if deadline is None
            else aiohttp.ClientTimeout(total=total, sock_connect=self.timeout, sock_read=total)
        )
        url = f"{self._base_url}/bot{self._token}/{method}"
        # aiohttp's exception texts may carry the URL, hence the token: only the exception's type is reported, and
        # `from None` keeps the original out of tracebacks.
        try:
            # One deadline for the whole exchange: aiohttp's own timeouts alone let an answer that trickles in a byte
            # at a time run on for as long as the bytes keep coming.
            async with asyncio.timeout(total):
                async with self._session.post(url, json=payload, timeout=client_timeout) as resp:
                    status = resp.status
                    retry_header = resp.headers.get("Retry-After")
                    raw = await _read_capped(resp.content, self.max_answer_bytes)
        except TimeoutError:
            raise TemporaryFailure("telegram: request timed out") from None
        except aiohttp.InvalidURL:
            raise PermanentFailure("telegram: invalid base_url") from None
        except aiohttp.ClientError as exc:
            raise TemporaryFailure(f"telegram: connection failed ({type(exc).__name__})") from None
        if len(raw) > self.max_answer_bytes:
            # Not Telegram's answer; whether the message went out is unknown, and at least once means retrying.
            raise TemporaryFailure("telegram: answer too large")
        body = _json_object(raw.decode("utf-8", errors="replace"))
        description = self._describe(body, status)
        if status == 200 and body.get("ok") is True:
            return body.get("result")
        if status == 429:
            retry_after = _retry_after(body, retry_header)
            raise TemporaryFailure(f"telegram: {description}", retry_after=retry_after)
        if status >= 500 or status == 408:
            raise TemporaryFailure(f"telegram: {description}")
        if 200 <= status < 300:
            # Not Telegram's answer (a proxy's page, a cut body): the message may or may not have gone out; at least
            # once means trying again.
            raise TemporaryFailure(f"telegram: unexpected answer to HTTP {status}")
        raise PermanentFailure(f"telegram: {description}")

    def _describe(self, body: dict[str, Any], status: int) -> str:
        description = body.get("description")
        text = f"HTTP {status}: {description}" if isinstance(description, str) else f"HTTP {status}"
        # Telegram does not echo the token, but a proxy in front of it might.
        return redact(text, self._token)[:500]


async def _read_capped(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The body, but no more than limit + 1 bytes of it (one more than allowed says it is too large)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        # read(n) returns what has arrived, up to n bytes; b"" only at the end of the body.
        chunk = await stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _json_object(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(body: dict[str, Any], header: str | None) -> float | None:
    parameters = body.get("parameters")
    if isinstance(parameters, dict):
        value = parameters.get("retry_after")
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
        # The HTTP form allows a date instead of seconds.
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return None
