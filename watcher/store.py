"""SQLite state (sqlite-utils): alert state, alerts, history, chain status, positions and silences, beside the outbox.

A check's outcome is committed in one transaction: alert state changes, the alerts they raise, and the outbox
rows that deliver them. A crash therefore loses nothing and re-sends nothing that was already committed as sent.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import tempfile
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from watcher.alerts import AlertState
from watcher.config import ConfigError
from watcher.model import Level
from watcher.notify import outbox
from watcher.notify.base import Message

SCHEMA_VERSION = 2


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert raised: what it was about and the message sent for it."""

    id: str  #: the alert id, carried in every message so a duplicate delivery is recognisable
    position: str  #: position key, or "chain:<name>" for watcher health
    kind: str  #: fire, escalate, repeat, recover, falling_fast, degraded, recovered
    level: str
    health: int | None
    created_at: float
    subject: str
    text: str


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """A position's reading at one block."""

    position: str
    at: float
    block: int
    block_hash: str
    health: int | None
    level: str
    collateral: int
    debt: int


def _state_to_json(state: AlertState) -> str:
    d = asdict(state)
    d["level"], d["pending"] = int(state.level), int(state.pending)
    d["samples"] = [[t, str(h)] for t, h in state.samples]
    return json.dumps(d)


def _state_from_json(text: str) -> AlertState:
    d = json.loads(text)
    d["level"], d["pending"] = Level(d["level"]), Level(d["pending"])
    d["samples"] = tuple((t, int(h)) for t, h in d["samples"])
    return AlertState(**d)


def _add_columns(db: sqlite_utils.Database, table: str, columns: dict[str, type]) -> None:
    have = set(db[table].columns_dict)
    for name, kind in columns.items():
        if name not in have:
            db.execute(f"ALTER TABLE [{table}] ADD COLUMN [{name}] {'INTEGER' if kind is int else 'REAL'}")


def _not_a_directory(path: Path) -> Path | None:
    """The first ancestor of `path` that exists but is not a directory, if any (/etc/hostname in /etc/hostname/x.db)."""
    for parent in reversed(path.parents):
        try:
            st = os.stat(parent)
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return parent
    return None


def _nearest_existing(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path("/")


def open_store(path: str) -> Store:
    """The store at storage.path, created if need be; a path that cannot hold it is one ConfigError naming the key.

    Permission bits are checked with os.access, but root ignores them and some file systems refuse what access()
    allows, so whatever SQLite or the OS then refuse is turned into the same error by Store itself.
    """
    if not path.strip():
        raise ConfigError("storage.path: is empty: give the path of the database file")
    if "\x00" in path:
        raise ConfigError("storage.path: holds a NUL character")
    p = Path(os.path.expanduser(path))
    where = f"storage.path: {p}"
    blocker = _not_a_directory(p)
    if blocker is not None:
        raise ConfigError(f"{where}: {blocker} is a file, not a directory")
    try:
        st: os.stat_result | None = os.stat(p)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{where}: is a directory; give a file in it, e.g. {p / 'watcher.db'}")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: is not a regular file")
        if not os.access(p, os.W_OK):
            raise ConfigError(f"{where}: the file is not writable")
        if not os.access(p, os.R_OK):
            raise ConfigError(f"{where}: the file is not readable")
    parent = p.parent
    if parent.is_dir():
        # SQLite writes its -wal and -shm files beside the database
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"{where}: its directory {parent} is not writable")
    else:
        base = _nearest_existing(p)
        if not os.access(base, os.W_OK | os.X_OK):
            raise ConfigError(f"{where}: cannot create its directory: {base} is not writable")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{where}: cannot create its directory {parent}: {exc.strerror}") from None
    # access() says what the permission bits allow; root passes it, but a read-only mount or an immutable file still
    # refuses the write: try for real, so the reason is the OS's own rather than SQLite's "unable to open"
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot write in its directory {parent}: {exc.strerror}") from None
    try:
        os.close(os.open(p, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot create or write the file: {exc.strerror}") from None
    try:
        return Store(p)
    except ConfigError:
        if st is None:
            p.unlink(missing_ok=True)  # ours, and empty: leave nothing behind
        raise


class Store:
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

    def _migrate(self) -> None:
        db = self.db
        with db.atomic():
            db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
            db["alert_state"].create(
                {"position": str, "state": str, "updated_at": float}, pk="position", if_not_exists=True
            )
            db["alerts"].create(
                {
                    "id": str,
                    "position": str,
                    "kind": str,
                    "level": str,
                    "health": str,
                    "created_at": float,
                    "subject": str,
                    "text": str,
                    "acked_at": float,
                },
                pk="id",
                if_not_exists=True,
            )
            db["history"].create(
                {
                    "position": str,
                    "at": float,
                    "block": int,
                    "block_hash": str,
                    "health": str,
                    "level": str,
                    "collateral": str,
                    "debt": str,
                },
                if_not_exists=True,
            )
            db["history"].create_index(["position", "at"], if_not_exists=True)
            db["chain_status"].create(
                {"chain": str, "degraded": int, "since": float, "reason": str, "last_ok": float, "last_block": int},
                pk="chain",
                if_not_exists=True,
            )
            db["positions"].create(
                {
                    "position": str,
                    "protocol": str,
                    "chain": str,
                    "account": str,
                    "label": str,
                    "level": str,
                    "health": str,
                    "doc": str,
                    "updated_at": float,
                    "block": int,
                },
                pk="position",
                if_not_exists=True,
            )
            db["silences"].create(
                {"id": int, "account": str, "position": str, "until": float, "created_at": float},
                pk="id",
                if_not_exists=True,
            )
            # Columns added in schema 2 to tables that schema 1 already created.
            _add_columns(db, "alerts", {"silenced": int})
            _add_columns(db, "chain_status", {"last_check_seconds": float, "rpc_errors": int})
            db["meta"].upsert({"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key")
        outbox.ensure_schema(db)

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
    ) -> list[int]:
        """Write state changes, alerts and their outbox rows (one per channel) in one transaction.

        `positions` are rows of the positions table; alerts whose id is in `muted` are stored but not enqueued;
        positions keyed in `unknown` could not be read, and are marked so.
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
                for ch in channels:
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

    # --- what the API and the daemon read and change (every query of the store is in this module)

    def degraded_episodes(self, chain: str) -> int:
        """Degraded episodes of a chain so far, as stored (each one's alert id is distinct)."""
        return self.db.execute(
            "select count(*) from alerts where position = ? and kind = 'degraded'", [f"chain:{chain}"]
        ).fetchone()[0]

    def position_docs(
        self, filters: dict[str, Any], stale: dict[str, float], level: str | None = None
    ) -> list[tuple[str, str, bool]]:
        """(document JSON, chain, too old) of each position matching `filters` (account, protocol, chain) and
        `level`, by id. A position is too old when its chain is in `stale` and it was read before that cutoff; a
        too-old position counts as unknown, whatever its stored level."""
        if stale:
            old_sql = "(" + " or ".join("(chain = ? and coalesce(updated_at, 0) < ?)" for _ in stale) + ")"
            old_args: list[Any] = [x for item in stale.items() for x in item]
        else:
            old_sql, old_args = "0", []
        where, args = [], []
        for name in ("account", "protocol", "chain"):  # column names from this fixed list only
            if name in filters:
                where.append(f"{name} = ?")
                args.append(filters[name])
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

    def position_healths(self) -> list[tuple[Any, ...]]:
        """(position, protocol, chain, account, level, health, updated_at) of every position, by id."""
        return self.db.execute(
            "select position, protocol, chain, account, level, health, updated_at from positions order by position"
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

    def prune_history(self, before: float) -> int:
        """Drop history older than `before`; returns the number of rows removed."""
        with self.db.atomic():
            cur = self.db.execute("delete from history where at < ?", [before])
        return cur.rowcount
