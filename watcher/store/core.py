"""The Store: the SQLite file, its reads for a restart, and the one write of a check.

A check's outcome is committed in one transaction: alert state changes, the alerts they raise, and the outbox
rows that deliver them. A crash therefore loses nothing and re-sends nothing that was already committed as sent.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from watcher.alerts import AlertState
from watcher.config import ConfigError
from watcher.notify.base import Message
from watcher.store import outbox
from watcher.store.queries import ApiQueries
from watcher.store.records import AlertRecord, HistoryRow, _state_from_json, _state_to_json
from watcher.store.schema import migrate

#: Picks the channels (of those given) that get an alert, inside the commit's transaction.
Route = Callable[[sqlite_utils.Database, AlertRecord, Sequence[str]], Sequence[str]]


class Store(ApiQueries):
    """The watcher's SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(os.path.expanduser(str(path)))
        conn = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA journal_mode=WAL")  # the API reads while the daemon writes
            self.db.execute("PRAGMA synchronous=FULL")  # an alert committed is an alert kept
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"storage.path: {self.path}: cannot open the database: {reason}") from None

    def set_busy_timeout(self, seconds: float) -> None:
        """How long a write waits for a lock held by another connection before it fails."""
        self.db.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

    def _migrate(self) -> None:
        migrate(self.db)

    # --- reads

    def alert_states(self) -> dict[str, AlertState]:
        """Every position's remembered alert state."""
        return {r["position"]: _state_from_json(r["state"]) for r in self.db["alert_state"].rows}

    def chain_status(self) -> dict[str, dict[str, Any]]:
        """Per chain: degraded flag, since, reason, last good read."""
        return {r["chain"]: r for r in self.db["chain_status"].rows}

    def last_history(self) -> dict[str, tuple[float, int | None, str]]:
        """Per position, the newest stored (time, health, level)."""
        sql = (
            "select position, at, health, level from history h where at = "
            "(select max(at) from history where position = h.position)"
        )
        return {
            p: (at, None if health is None else int(health), level)
            for p, at, health, level in self.db.execute(sql).fetchall()
        }

    def alerts(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest alerts first."""
        return list(self.db["alerts"].rows_where(order_by="created_at desc", limit=limit))

    def advice_docs(self) -> dict[str, tuple[float, list[Any], Any]]:
        """Per position, the stored (advice time, liquidation prices, advice), so a restart does not recompute it."""
        out = {}
        for key, text in self.db.execute("select position, doc from positions").fetchall():
            doc = json.loads(text)
            if doc.get("advice_at") is not None:
                out[key] = (doc["advice_at"], doc["liquidation_prices"], doc["advice"])
        return out

    def silenced(self, now: float) -> tuple[set[str], set[str]]:
        """The accounts and the positions muted at `now`."""
        rows = self.db.execute("select account, position from silences where until > ?", [now]).fetchall()
        return {a for a, _ in rows if a}, {p for _, p in rows if p}

    # --- the one write of a check

    def commit(
        self,
        *,
        now: float,
        states: dict[str, AlertState],
        alerts: Iterable[AlertRecord],
        channels: Iterable[str],
        history: Iterable[HistoryRow] = (),
        chain_status: dict[str, dict[str, Any]] | None = None,
        positions: Iterable[dict[str, Any]] = (),
        muted: Collection[str] = (),
        unknown: Iterable[str] = (),
        route: Route | None = None,
    ) -> list[int]:
        """Write state changes, alerts and their outbox rows (one per channel) in one transaction.

        `positions` are rows of the positions table; alerts whose id is in `muted` are stored but not enqueued;
        positions keyed in `unknown` could not be read, and are marked so; `route` picks each alert's channels
        (called in the transaction, so it sees the outbox rows of earlier alerts), default all of them.
        """
        channels = list(channels)
        rows: list[int] = []
        db = self.db
        with db.atomic():
            if states:
                db["alert_state"].upsert_all(
                    [{"position": k, "state": _state_to_json(v), "updated_at": now} for k, v in states.items()],
                    pk="position",
                )
            for a in alerts:
                if db["alerts"].count_where("id = ?", [a.id]):
                    continue  # the same alert id is never sent twice
                db["alerts"].insert(
                    {
                        "id": a.id,
                        "position": a.position,
                        "kind": a.kind,
                        "level": a.level,
                        "health": None if a.health is None else str(a.health),
                        "created_at": a.created_at,
                        "subject": a.subject,
                        "text": a.text,
                        "acked_at": None,
                        "silenced": int(a.id in muted),
                    }
                )
                if a.id in muted:
                    continue
                for ch in channels if route is None else route(db, a, channels):
                    rows.append(
                        outbox.enqueue(
                            db,
                            Message(a.id, a.subject, a.text),
                            ch,
                            now,
                            position=a.position,
                            severity=outbox.severity_rank(a.level),
                        )
                    )
            hist = [
                {
                    "position": h.position,
                    "at": h.at,
                    "block": h.block,
                    "block_hash": h.block_hash,
                    "health": None if h.health is None else str(h.health),
                    "level": h.level,
                    "collateral": str(h.collateral),
                    "debt": str(h.debt),
                }
                for h in history
            ]
            if hist:
                db["history"].insert_all(hist)
            for chain, status in (chain_status or {}).items():
                db["chain_status"].upsert({"chain": chain, **status}, pk="chain")
            rows_ = list(positions)
            if rows_:
                db["positions"].upsert_all(rows_, pk="position")
            for key in unknown:
                self._mark_unknown(key)
        return rows

    def _mark_unknown(self, key: str) -> None:
        """Mark unknown the account's positions: `key` is protocol:chain:account, and a position of one market of
        the account has its market id after it (Compound, Maker, Morpho, Liquity v2, dYdX subaccounts)."""
        prefix = key + ":"
        found = self.db.execute(
            "select position, doc from positions where position = ? or substr(position, 1, ?) = ?",
            [key, len(prefix), prefix],
        ).fetchall()
        for position, raw in found:
            doc = json.loads(raw)
            # The last good reading stays for reference, but the level says it is not known now: never "healthy".
            doc["level"] = "unknown"
            self.db.execute(
                "update positions set level = 'unknown', doc = ? where position = ?", [json.dumps(doc), position]
            )

    def outbox_depth(self) -> int:
        """How many outbox rows are still pending."""
        return outbox.depth(self.db)
