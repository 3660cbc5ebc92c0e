"""The Telegram command listener: long-polls getUpdates, answers the configured chats, ignores every other one.

It runs beside the relay on the daemon's loop and shares nothing with alert delivery but the channel's HTTP code and
pacing: a Telegram that is down, hangs or answers garbage here only makes this loop back off, never the alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Collection
from fractions import Fraction
from typing import Any

from watcher.config import Config
from watcher.notify.base import PermanentFailure, TemporaryFailure
from watcher.notify.commands import Commands, parse
from watcher.notify.telegram import TelegramChannel
from watcher.store import Store

log = logging.getLogger("watcher.notify")

#: the meta key holding the next update id to ask for, so a restart does not answer a command twice
OFFSET_KEY = "telegram_update_offset"
#: updates per poll: 20 full-length messages stay far below the channel's answer cap
BATCH = 20
#: a command sent longer ago than this (the watcher was down) is not run: a "/mute 2h" from yesterday is stale
MAX_COMMAND_AGE = 600.0
#: the longest 429 flood wait honoured before polling again (a larger one is a broken proxy, not Telegram)
MAX_FLOOD_WAIT = 3600.0


class CommandListener:
    """getUpdates in a loop with the offset kept in the store; each command answered through sendMessage."""

    def __init__(
        self,
        channel: TelegramChannel,
        commands: Commands,
        store: Store,
        chats: Collection[str],
        *,
        poll_timeout: int,
        backoff_initial: float,
        backoff_max: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.channel = channel
        self.commands = commands
        self.store = store
        self.chats = {str(c) for c in chats}
        self.poll_timeout = poll_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.clock = clock
        self.offset: int | None = None
        self.answered = 0  #: commands answered since start
        self.failures = 0  #: polls in a row that failed

    def _load_offset(self) -> int | None:
        try:
            raw = self.store.meta_value(OFFSET_KEY)
        except sqlite3.Error as exc:
            log.warning("telegram commands: cannot read the update offset", extra={"error": str(exc)[:200]})
            return None
        return int(raw) if raw is not None and raw.isdigit() else None

    def _save_offset(self, offset: int) -> None:
        self.offset = offset
        try:
            self.store.set_meta_value(OFFSET_KEY, str(offset))
        except sqlite3.Error as exc:
            # kept in memory: this process still does not answer twice; only a restart might
            log.warning("telegram commands: cannot store the update offset", extra={"error": str(exc)[:200]})

    async def poll(self) -> list[Any]:
        """One getUpdates long poll; its deadline is the poll's own timeout plus the channel's request timeout."""
        payload: dict[str, Any] = {"timeout": self.poll_timeout, "limit": BATCH, "allowed_updates": ["message"]}
        if self.offset is not None:
            payload["offset"] = self.offset
        result = await self.channel.request("getUpdates", payload, deadline=self.poll_timeout + self.channel.timeout)
        if not isinstance(result, list):
            raise TemporaryFailure(f"telegram: getUpdates answered a {type(result).__name__}, not a list")
        return result

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and answer until `stop` is set; every failure is logged and backed off, none ends the loop."""
        self.offset = self._load_offset()
        log.info("telegram commands on", extra={"chats": sorted(self.chats), "offset": self.offset})
        delay = self.backoff_initial
        while not stop.is_set():
            poll = asyncio.ensure_future(self.poll())
            stopping = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({poll, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if poll not in done:
                poll.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await poll
                return
            try:
                updates = poll.result()
            except (TemporaryFailure, PermanentFailure) as exc:
                self.failures += 1
                # A refusal (401 bad token, 409 a webhook or another poller) will not pass soon: wait the longest.
                wait = self.backoff_max if isinstance(exc, PermanentFailure) else delay
                if isinstance(exc, TemporaryFailure) and exc.retry_after is not None:
                    # a 429's flood wait is Telegram's to set; asking sooner only lengthens it
                    wait = max(wait, min(exc.retry_after, MAX_FLOOD_WAIT))
                log.warning("telegram commands: getUpdates failed", extra={"error": str(exc), "retry_in": wait})
                delay = min(self.backoff_max, delay * 2)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                continue
            except Exception:  # a bug of ours must not end the listener, nor the daemon
                log.exception("telegram commands: poll failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.backoff_max)
                continue
            if self.failures:
                log.info("telegram commands: getUpdates answers again", extra={"after_failures": self.failures})
            self.failures, delay = 0, self.backoff_initial
            before = self.offset
            for update in updates:
                await self._handle(update)
            if updates and self.offset == before:
                # updates without a usable id would come back at once, for ever: not a loop to spin in
                log.warning("telegram commands: getUpdates answered no usable update", extra={"count": len(updates)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.backoff_max)

    async def _handle(self, update: Any) -> None:
        """One update: skipped unless it is a recent text command from a configured chat."""
        if not isinstance(update, dict):
            return
        update_id = update.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
            return
        if self.offset is not None and update_id < self.offset:
            return  # already handled (a Telegram that repeats itself)
        # The offset moves on before the command runs: a crash then loses one answer rather than muting twice.
        self._save_offset(update_id + 1)
        message = update.get("message")
        if not isinstance(message, dict):
            return
        chat = message.get("chat")
        chat_id = chat.get("id") if isinstance(chat, dict) else None
        if not isinstance(chat_id, int | str) or isinstance(chat_id, bool):
            return
        chat_id = str(chat_id)
        if chat_id not in self.chats:
            # never the text: a stranger's message is none of our logs' business, and it may carry anything
            log.warning(
                "telegram command from an unknown chat ignored", extra={"chat": chat_id[:32], "update": update_id}
            )
            return
        text = message.get("text")
        command = parse(text) if isinstance(text, str) else None
        if command is None:
            return
        sent = message.get("date")
        if isinstance(sent, int | float) and self.clock() - sent > MAX_COMMAND_AGE:
            log.info("telegram command too old, not run", extra={"command": command.name[:32], "update": update_id})
            await self._reply(
                chat_id, f"/{command.name[:32]} was sent while the watcher was not running; send it again."
            )
            return
        try:
            answer = self.commands.answer(command)
        except sqlite3.Error as exc:  # the store failing (locked, full) is an answer too, not a dead listener
            log.warning("telegram command failed", extra={"command": command.name[:32], "error": str(exc)[:200]})
            answer = f"/{command.name[:32]} failed: the database refused it ({str(exc)[:200]}); try again"
        except Exception as exc:  # a bug of ours: one line to the user, the listener lives on
            log.exception("telegram command failed", extra={"command": command.name[:32]})
            answer = f"/{command.name[:32]} failed: {type(exc).__name__}; see the watcher's log"
        log.info("telegram command", extra={"command": command.name[:32], "chat": chat_id, "update": update_id})
        await self._reply(chat_id, answer)

    async def _reply(self, chat_id: str, text: str) -> None:
        try:
            await self.channel.send_text(chat_id, text)
            self.answered += 1
        except (TemporaryFailure, PermanentFailure) as exc:
            # a reply is not an alert: no outbox, no retry; the user asks again
            log.warning("telegram command reply failed", extra={"chat": chat_id, "error": str(exc)})


def build_listener(
    cfg: Config,
    store: Store,
    channels: dict[str, Any],
    clock: Callable[[], float] = time.time,
    simulate: Callable[[dict[str, Fraction]], str] | None = None,
) -> CommandListener | None:
    """The listener `notify.telegram.commands = true` asks for, on the alert channel's HTTP session; else None."""
    tg = cfg.notify.telegram
    channel = channels.get("telegram")
    if tg is None or not tg.commands or not isinstance(channel, TelegramChannel):
        return None
    return CommandListener(
        channel,
        Commands(store, cfg, clock) if simulate is None else Commands(store, cfg, clock, simulate=simulate),
        store,
        [tg.chat_id, *tg.command_chats],
        poll_timeout=tg.poll_timeout,
        backoff_initial=cfg.notify.retry_initial,
        # a command waits for the user: past a minute between polls the bot would look dead
        backoff_max=min(cfg.notify.retry_max, 60.0),
        clock=clock,
    )
