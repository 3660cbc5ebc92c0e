"""What the API and the daemon read and change of positions, alerts, silences and history, beside a check's write."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlite_utils


class ApiQueries:
    """The store's queries for the API, the metrics and the pruner; mixed into Store, which owns `db`."""

    db: sqlite_utils.Database

    def degraded_episodes(self, chain: str) -> int:
        """Degraded episodes of a chain so far, as stored (each one's alert id is distinct)."""
        return self.db.execute(
            "select count(*) from alerts where position = ? and kind = 'degraded'", [f"chain:{chain}"]
        ).fetchone()[0]

    def position_docs(
        self, filters: dict[str, Any], stale: dict[str, float], level: str | None = None
    ) -> list[tuple[str, str, bool]]:
        """(document JSON, chain, too old) of each position matching `filters` (account, protocol, chain,
        deployment) and `level`, by id. A position is too old when its chain is in `stale` and it was read before
        that cutoff; a too-old position counts as unknown, whatever its stored level."""
        if stale:
            old_sql = "(" + " or ".join("(chain = ? and coalesce(updated_at, 0) < ?)" for _ in stale) + ")"
            old_args: list[Any] = [x for item in stale.items() for x in item]
        else:
            old_sql, old_args = "0", []
        where, args = [], []
        for name in ("account", "chain", "deployment"):  # column names from this fixed list only
            if name in filters:
                where.append(f"{name} = ?")
                args.append(filters[name])
        if "protocol" in filters:  # the family (aave_v3) or, as ids start with it, the deployment's name
            where.append("(protocol = ? or deployment = ?)")
            args.extend([filters["protocol"]] * 2)
        if level == "unknown":
            where.append(f"(level = 'unknown' or {old_sql})")
            args.extend(old_args)
        elif level is not None:
            where.append(f"(level = ? and not {old_sql})")
            args.extend([level, *old_args])
        sql = (
            f"select doc, chain, {old_sql} from positions"
            + (" where " + " and ".join(where) if where else "")
            + " order by position"
        )
        return [(d, c, bool(o)) for d, c, o in self.db.execute(sql, [*old_args, *args]).fetchall()]

    def position_doc(self, key: str) -> tuple[str, str, float | None] | None:
        """(document JSON, chain, updated_at) of one position, or None."""
        return self.db.execute("select doc, chain, updated_at from positions where position = ?", [key]).fetchone()

    def position_history(self, key: str, since: float, limit: int) -> list[tuple[Any, ...]]:
        """(at, block, block_hash, health, level, collateral, debt) of a position's readings since `since`."""
        return self.db.execute(
            "select at, block, block_hash, health, level, collateral, debt from history"
            " where position = ? and at >= ? order by at limit ?",
            [key, since, limit],
        ).fetchall()

    def recent_history(self, key: str, limit: int) -> list[tuple[Any, ...]]:
        """The newest `limit` readings of a position, oldest first (same columns as position_history)."""
        rows = self.db.execute(
            "select at, block, block_hash, health, level, collateral, debt from history"
            " where position = ? order by at desc limit ?",
            [key, limit],
        ).fetchall()
        return rows[::-1]

    def history_since(self, since: float, position: str | None = None) -> list[tuple[Any, ...]]:
        """(position, at, block, block_hash, health, level, collateral, debt, label) of every reading since `since`
        (of one position, if given), by position then time; the label from the positions table, or None."""
        where, args = "h.at >= ?", [since]
        if position is not None:
            where += " and h.position = ?"
            args.append(position)
        return self.db.execute(
            "select h.position, h.at, h.block, h.block_hash, h.health, h.level, h.collateral, h.debt, p.label"
            f" from history h left join positions p on p.position = h.position where {where}"
            " order by h.position, h.at",
            args,
        ).fetchall()

    def history_positions(self) -> list[str]:
        """Every position with stored history, by id."""
        return [r[0] for r in self.db.execute("select distinct position from history order by position").fetchall()]

    def position_healths(self) -> list[tuple[Any, ...]]:
        """(position, protocol, deployment, chain, account, level, health, updated_at) of every position, by id."""
        return self.db.execute(
            "select position, protocol, coalesce(deployment, protocol), chain, account, level, health, updated_at"
            " from positions order by position"
        ).fetchall()

    def alert_rows(self, where: str = "", args: Iterable[Any] = (), limit: int = 100) -> list[dict[str, Any]]:
        """Alerts, newest first, each with its `deliveries` (one per outbox row) and `open`: the newest alert of
        its position, neither a recovery nor acknowledged. `where` is a fixed SQL condition with ? for `args`."""
        rows = list(
            self.db["alerts"].rows_where(where or None, list(args), order_by="created_at desc, id desc", limit=limit)
        )
        ids = [r["id"] for r in rows]
        deliveries: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        if ids:
            marks = ", ".join("?" * len(ids))
            for alert_id, channel, status, attempts, last_error, delivered_at in self.db.execute(
                "select alert_id, channel, status, attempts, last_error, delivered_at from outbox"
                f" where alert_id in ({marks}) order by id",
                ids,
            ).fetchall():
                deliveries[alert_id].append(
                    {
                        "channel": channel,
                        "status": status,
                        "attempts": attempts,
                        "last_error": last_error,  # redacted by notify when it was stored
                        "delivered_at": delivered_at,
                    }
                )
        latest = dict(self.db.execute("select position, max(created_at) from alerts group by position").fetchall())
        for r in rows:
            r["deliveries"] = deliveries[r["id"]]
            r["open"] = (
                r["acked_at"] is None
                and r["kind"] not in ("recover", "recovered")
                and r["created_at"] == latest.get(r["position"])
            )
        return rows

    def ack_alert(self, alert_id: str, now: float) -> bool:
        """Acknowledge an alert (the first acknowledgement's time is kept); False if there is no such alert."""
        with self.db.atomic():
            cur = self.db.execute("update alerts set acked_at = coalesce(acked_at, ?) where id = ?", [now, alert_id])
        return bool(cur.rowcount)

    def add_silence(self, account: str | None, position: str | None, until: float, now: float) -> int:
        """Store a silence; returns its id."""
        with self.db.atomic():
            cur = self.db.execute(
                "insert into silences (account, position, until, created_at) values (?, ?, ?, ?)",
                [account, position, until, now],
            )
        return int(cur.lastrowid or 0)

    def silences_in_force(self, now: float) -> list[tuple[Any, ...]]:
        """(id, account, position, until, created_at) of the silences in force at `now`, soonest end first."""
        return self.db.execute(
            "select id, account, position, until, created_at from silences where until > ? order by until", [now]
        ).fetchall()

    def delete_silence(self, silence_id: int) -> tuple[Any, ...] | None:
        """Remove a silence; returns its row, or None if there is none with that id."""
        with self.db.atomic():
            row = self.db.execute(
                "select id, account, position, until, created_at from silences where id = ?", [silence_id]
            ).fetchone()
            if row is not None:
                self.db.execute("delete from silences where id = ?", [silence_id])
        return row

    def meta_value(self, key: str) -> str | None:
        """A value of the small key/value table (`meta`), or None."""
        row = self.db.execute("select value from meta where key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def set_meta_value(self, key: str, value: str) -> None:
        """Store a value in the key/value table (`meta`), replacing the old one."""
        with self.db.atomic():
            self.db.execute("insert or replace into meta (key, value) values (?, ?)", [key, value])

    def prune_history(self, before: float) -> int:
        """Drop history (and price readings) older than `before`; returns the number of history rows removed."""
        with self.db.atomic():
            cur = self.db.execute("delete from history where at < ?", [before])
            self.db.execute("delete from price_readings where at < ?", [before])
        return cur.rowcount

    def add_price_readings(self, rows: Iterable[tuple[str, str, str, float, int]]) -> None:
        """Store (chain, deployment, asset, at, price) readings, the price an integer in the protocol's base units."""
        with self.db.atomic():
            self.db.conn.executemany(
                "insert into price_readings (chain, deployment, asset, at, price) values (?, ?, ?, ?, ?)",
                [(c, d, a, at, str(price)) for c, d, a, at, price in rows],
            )

    def price_readings(self, since: float, per_series: int) -> dict[tuple[str, str, str], list[tuple[int, int]]]:
        """The stored readings since `since`, by (chain, deployment, asset), oldest first, at most the newest
        `per_series` of each."""
        out: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
        rows = self.db.execute(
            "select chain, deployment, asset, at, price from price_readings where at >= ? order by at", [since]
        )
        for chain, deployment, asset, at, price in rows:
            out.setdefault((chain, deployment, asset), []).append((int(at), int(price)))
        return {k: v[-per_series:] for k, v in out.items()}
