"""Telegram commands: a chat message parsed and answered from the store, changing it only as the API does."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from eth_utils import is_hex_address

from watcher.api.base import BadRequest, _account, _text, check_silence_until, position_id
from watcher.api.freshness import _bounds, _freshness, _stale_doc
from watcher.config import Config
from watcher.notify.command_texts import position_text, sort_key, status_line
from watcher.store import Store

HELP = """Margin Watcher commands:
/status - every position, worst first
/position <label or id> - legs, liquidation prices, advice
/simulate ETH -20% - health at shocked prices
/mute <label|all> <2h|30m|1d> - alerts are stored, not sent
/unmute [label|all] - end mutes
/ack <ref> - acknowledge the alert of a message's ref: line
/help - this list"""

USAGE = {
    "position": "usage: /position <label or id>",
    "mute": "usage: /mute <label|all> <duration>, e.g. /mute all 2h (s, m, h or d; at most 366 days)",
    "unmute": "usage: /unmute [label|all]",
    "ack": "usage: /ack <ref> (the alert id on a message's ref: line)",
    "simulate": "usage: /simulate <asset> <change>%, e.g. /simulate ETH -20% (several pairs allowed)",
}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([0-9]{1,6})([smhd])")
_SHOCK = re.compile(r"([+-]?[0-9]{1,4}(?:\.[0-9]{1,4})?)%")
_SYMBOL = re.compile(r"[A-Za-z0-9.]{1,20}")
#: an answer longer than Telegram's limit is cut with this line
_MORE = "\n… (cut: use the API's GET /positions for the whole list)"
_MAX_TEXT = 4000


class CommandError(Exception):
    """A bad command or argument: the text is the short answer the user gets."""


def _shown(text: str, limit: int = 40) -> str:
    return repr(text[:limit])


def parse_duration(text: str) -> int:
    """Seconds of a duration such as 2h, 30m, 1d, 45s or 1h30m; CommandError naming the text otherwise."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.lower():
        raise CommandError(f"{_shown(text)} is not a duration: use s, m, h or d, e.g. 2h, 30m, 1d")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def parse_shocks(args: list[str]) -> dict[str, Fraction]:
    """`ETH -20% BTC -10%` as {symbol: relative change}; CommandError naming the bad part otherwise."""
    if not args or len(args) % 2:
        raise CommandError(USAGE["simulate"])
    shocks: dict[str, Fraction] = {}
    for symbol, change in zip(args[::2], args[1::2], strict=True):
        if not _SYMBOL.fullmatch(symbol):
            raise CommandError(f"{_shown(symbol)} is not an asset symbol; {USAGE['simulate']}")
        m = _SHOCK.fullmatch(change)
        if m is None:
            raise CommandError(f"{_shown(change)} is not a change in percent like -20%; {USAGE['simulate']}")
        pct = Fraction(m.group(1)) / 100
        if pct <= -1:
            raise CommandError(f"{_shown(change)}: a price cannot fall by 100% or more")
        shocks[symbol.upper()] = pct
    return shocks


def simulate_answer(shocks: dict[str, Fraction]) -> str:
    """The answer to /simulate for the parsed shocks ({"ETH": Fraction(-1, 5)} for `ETH -20%`).

    The seam for the what-if engine (watcher/whatif.py): replace this body, or pass `simulate=` to Commands.
    """
    wanted = ", ".join(f"{s} {float(p) * 100:+g}%" for s, p in shocks.items())
    return f"/simulate ({wanted}) needs the daemon's latest positions: it is answered by `watcher run` only."


@dataclass(frozen=True)
class Parsed:
    """A chat message as a command: its name (no slash, no @bot) and its arguments."""

    name: str
    args: list[str]


def parse(text: str) -> Parsed | None:
    """The command a message holds, or None when it is not one (plain chat text is not answered)."""
    words = text.strip().split()
    if not words or not words[0].startswith("/"):
        return None
    # In a group, Telegram sends /status@MyBot: the bot's name is not part of the command.
    name = words[0][1:].split("@", 1)[0].lower()
    return Parsed(name, words[1:])


class Commands:
    """Answers commands from the store: reads what the API serves, writes silences and acks as the API does."""

    def __init__(
        self,
        store: Store,
        cfg: Config,
        clock: Callable[[], float] = time.time,
        simulate: Callable[[dict[str, Fraction]], str] = simulate_answer,
    ) -> None:
        self.store = store
        self.cfg = cfg
        self.clock = clock
        # the API's own freshness rule: a position of a source with no good read for stale_after reads as unknown
        self._settings: dict[str, Any] = {"bounds": _bounds(cfg), "started": clock()}
        self._handlers: dict[str, Callable[[list[str]], str]] = {
            "help": lambda _: HELP,
            "start": lambda _: HELP,
            "status": self.status,
            "position": self.position,
            "simulate": lambda args: simulate(parse_shocks(args)),
            "mute": self.mute,
            "unmute": self.unmute,
            "ack": self.ack,
        }

    def answer(self, command: Parsed) -> str:
        """The reply to one command; a bad command or argument gets a short usage answer, never an exception."""
        handler = self._handlers.get(command.name)
        if handler is None:
            return f"unknown command /{command.name[:40]}; /help lists them"
        try:
            for arg in command.args:
                _text(arg, "argument")  # a lone surrogate (JSON "\ud800") cannot reach SQLite: named, not a crash
            text = handler(command.args)
        except CommandError as exc:
            text = str(exc)
        except BadRequest as exc:
            text = exc.text or "bad argument"
        return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - len(_MORE)] + _MORE

    # --- reads

    def _docs(self) -> list[dict[str, Any]]:
        now = self.clock()
        stale = _freshness(self._settings, self.store.chain_status(), now)
        rows = self.store.position_docs({}, {name: cutoff for name, (cutoff, _) in stale.items()})
        return [json.loads(_stale_doc(d, chain, stale) if old else d) for d, chain, old in rows]

    def status(self, args: list[str]) -> str:
        """Every position, one line each, worst first."""
        docs = sorted(self._docs(), key=sort_key)
        if not docs:
            return "No positions read yet."
        return "\n".join(status_line(d) for d in docs)

    def _matching(self, target: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The documents `target` names: a position id, an account label or an account address."""
        key_id = position_id(target, "id")  # the API's rule: a lower-case address in an id means the same one
        exact = [d for d in docs if d.get("id") == key_id]
        if exact:
            return exact
        key = target.lower()
        return [d for d in docs if str(d.get("label") or "").lower() == key or str(d.get("account")).lower() == key]

    def position(self, args: list[str]) -> str:
        """Legs, liquidation prices and advice of the positions a label or id names."""
        if len(args) != 1:
            raise CommandError(USAGE["position"])
        found = self._matching(args[0], self._docs())
        if not found:
            raise CommandError(f"no position or account {_shown(args[0])}; /status lists them")
        found.sort(key=sort_key)
        return "\n\n".join(position_text(d) for d in found)

    # --- writes (through the store's own methods, validated as the API validates them)

    def _targets(self, target: str) -> tuple[set[str], set[str], str]:
        """(accounts, positions, what to call them) that /mute and /unmute `target` mean."""
        docs = self._docs()
        configured = {a.address: a.label for a in self.cfg.accounts}
        if target.lower() == "all":
            chosen = docs
            accounts = set(configured)
            what = "all accounts"
        else:
            chosen = self._matching(target, docs)
            accounts = {
                a for a, label in configured.items() if label.lower() == target.lower() or a.lower() == target.lower()
            }
            if not chosen and not accounts:
                raise CommandError(f"no position or account {_shown(target)}; /status lists them")
            what = target
        positions: set[str] = set()
        whole = len(chosen) != 1 or chosen[0].get("id") != position_id(target, "id")
        for d in chosen:
            account = str(d.get("account"))
            # an EVM account is muted whole (like POST /silences {"account"}); a venue's (dydx1...) by position
            if whole and is_hex_address(account):
                accounts.add(account)
            else:
                positions.add(str(d.get("id")))
        return {_account(a) for a in accounts}, positions, what

    def mute(self, args: list[str]) -> str:
        """Silence a label's accounts (or all) for a duration: alerts are stored, not sent."""
        if len(args) != 2:
            raise CommandError(USAGE["mute"])
        seconds = parse_duration(args[1])
        now = self.clock()
        until = now + seconds
        check_silence_until(until, now, _shown(args[1]), "duration", "")
        accounts, positions, what = self._targets(args[0])
        if not accounts and not positions:
            raise CommandError("nothing to mute yet: no account is configured")
        for account in sorted(accounts):
            self.store.add_silence(account, None, until, now)
        for key in sorted(positions):
            self.store.add_silence(None, key, until, now)
        end = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        count = len(accounts) + len(positions)
        return (
            f"🔕 Muted {what} until {end} ({args[1]}, {count} silence(s)): alerts are stored, not sent. "
            "Watcher-degraded messages still go out. /unmute ends it."
        )

    def unmute(self, args: list[str]) -> str:
        """End the silences in force for a label (or all of them)."""
        if len(args) > 1:
            raise CommandError(USAGE["unmute"])
        target = args[0] if args else "all"
        rows = self.store.silences_in_force(self.clock())
        if target.lower() != "all":
            accounts, positions, _ = self._targets(target)
            rows = [r for r in rows if r[1] in accounts or r[2] in positions]
        for row in rows:
            self.store.delete_silence(int(row[0]))
        if not rows:
            return f"No silence in force for {target}."
        return f"🔔 Unmuted {target}: {len(rows)} silence(s) ended."

    def ack(self, args: list[str]) -> str:
        """Acknowledge an alert by the id on its message's ref: line."""
        if len(args) != 1:
            raise CommandError(USAGE["ack"])
        ref = args[0]
        if not self.store.ack_alert(ref, self.clock()):
            raise CommandError(f"no alert {_shown(ref, 120)}; the id is on the message's ref: line")
        return f"✔️ Acknowledged {ref}."
