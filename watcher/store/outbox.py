"""The durable outbox: one SQLite row per message and channel, written with the alert it belongs to.

Every outbox query lives here; the relay calls these and never writes SQL of its own.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlite_utils

if TYPE_CHECKING:
    from watcher.notify.base import Message

TABLE = "outbox"
PENDING, DELIVERED, FAILED, SUPERSEDED = "pending", "delivered", "failed", "superseded"

#: Rank of an alert level in the outbox: worse goes first. Anything not listed (ok, a recovery, a note) ranks 1.
SEVERITY = {"liquidatable": 5, "critical": 4, "unknown": 3, "degraded": 3, "warn": 2}
#: How a rank is named in the line that tells the user which folded update was the worst.
RANK_NAMES = {5: "LIQUIDATABLE", 4: "CRITICAL", 3: "UNKNOWN", 2: "WARN", 1: "OK"}

# Every function below writes through `db.conn.execute`, never sqlite-utils' write methods: those commit by
# themselves when no transaction is open, and the outbox rows must commit with the caller's own changes or not at all.
# Python's sqlite3 (default isolation level) opens a transaction at the first INSERT/UPDATE and leaves it open, so
# whoever calls these ends it (`with db.conn:` commits on success and rolls back on an exception).


def severity_rank(level: str | None) -> int:
    """The outbox rank of an alert level (liquidatable 5, critical 4, unknown/degraded 3, warn 2, anything else 1)."""
    return SEVERITY.get((level or "").lower(), 1)


@dataclass(frozen=True)
class OutboxRow:
    """One outbox row: a message to deliver on one channel and where its delivery stands."""

    id: int
    alert_id: str
    channel: str
    subject: str
    text: str
    created_at: float
    status: str
    attempts: int
    next_attempt_at: float | None
    delivered_at: float | None
    last_error: str | None
    fallback_of: int | None
    position: str  #: the alert's position key, or "chain:<name>": newer rows of one position supersede older ones
    severity: int  #: severity_rank of the alert's level

    @property
    def message(self) -> Message:
        """The message this row carries."""
        # Imported here: watcher.notify imports this module, so a top-level import would be circular.
        from watcher.notify.base import Message

        return Message(alert_id=self.alert_id, subject=self.subject, text=self.text)


_COLUMNS = ", ".join(f"[{name}]" for name in OutboxRow.__dataclass_fields__)


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Create the outbox table and its indexes if they do not exist yet, and add columns an older table lacks."""
    with db.conn:
        db.table(TABLE).create(
            {
                "id": int,
                "alert_id": str,
                "channel": str,
                "subject": str,
                "text": str,
                "created_at": float,
                "status": str,
                "attempts": int,
                "next_attempt_at": float,
                "delivered_at": float,
                "last_error": str,
                "fallback_of": int,
                "position": str,
                "severity": int,
            },
            pk="id",
            not_null={"alert_id", "channel", "subject", "text", "created_at", "status", "attempts"},
            defaults={"status": PENDING, "attempts": 0},
            if_not_exists=True,
        )
        have = {row[1] for row in db.conn.execute(f"PRAGMA table_info([{TABLE}])")}
        if "position" not in have:
            db.conn.execute(f"ALTER TABLE [{TABLE}] ADD COLUMN [position] TEXT")
        if "severity" not in have:
            db.conn.execute(f"ALTER TABLE [{TABLE}] ADD COLUMN [severity] INTEGER")
        # Rows written before these columns existed: each its own position (never folded), the mildest rank.
        db.conn.execute(f"UPDATE [{TABLE}] SET [position] = alert_id WHERE [position] IS NULL")
        db.conn.execute(f"UPDATE [{TABLE}] SET severity = 1 WHERE severity IS NULL")
    db.table(TABLE).create_index(["status", "next_attempt_at"], if_not_exists=True)
    db.table(TABLE).create_index(["fallback_of"], if_not_exists=True)


def enqueue(
    db: sqlite_utils.Database,
    message: Message,
    channel: str,
    now: float,
    *,
    position: str | None = None,
    severity: int = 1,
    fallback_of: int | None = None,
) -> int:
    """Add a pending row and return its id; it never commits: run it in the caller's transaction (`with db.conn:`).

    `position` (default: the alert id, so the row is never folded) groups the rows a newer one supersedes;
    `severity` is its severity_rank.
    """
    # With sqlite-utils 4, a write made through sqlite-utils (db[...].insert/update, db.execute) before this call inside
    # `with db.conn:` commits on its own; `with db.atomic():` makes every write in the block one transaction.
    cursor = db.conn.execute(
        f"INSERT INTO {TABLE} (alert_id, channel, subject, text, created_at, status, attempts, next_attempt_at,"
        " fallback_of, position, severity) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
        (
            message.alert_id,
            channel,
            message.subject,
            message.text,
            now,
            PENDING,
            now,
            fallback_of,
            position if position is not None else message.alert_id,
            int(severity),
        ),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def pending(db: sqlite_utils.Database, channel: str | None = None) -> list[OutboxRow]:
    """Every pending row (of one channel, if given), oldest first."""
    where, args = ("status = ?", [PENDING]) if channel is None else ("status = ? AND channel = ?", [PENDING, channel])
    rows = db.conn.execute(f"SELECT {_COLUMNS} FROM {TABLE} WHERE {where} ORDER BY created_at, id", args).fetchall()
    return [OutboxRow(*row) for row in rows]


def in_order(rows: Iterable[OutboxRow]) -> list[OutboxRow]:
    """Rows in sending order: per channel and position oldest first, positions by their worst rank, then their age.

    A snapshot: the relay plans again after every send, so once a position's worst row has gone out, its milder rest
    queues by its own rank.
    """
    by_group: dict[tuple[str, str], list[OutboxRow]] = {}
    for row in sorted(rows, key=lambda r: (r.created_at, r.id)):
        by_group.setdefault((row.channel, row.position), []).append(row)
    # One position's rows never overtake each other, so a group's rank is that of its worst row.
    groups = sorted(by_group.values(), key=lambda g: (-max(r.severity for r in g), g[0].created_at, g[0].id))
    return list(itertools.chain.from_iterable(groups))


def due(db: sqlite_utils.Database, now: float, limit: int = 100) -> list[OutboxRow]:
    """Pending rows whose next attempt is due at `now`, in sending order (see in_order), at most `limit`."""
    rows = db.conn.execute(
        f"SELECT {_COLUMNS} FROM {TABLE} WHERE status = ? AND next_attempt_at <= ?", (PENDING, now)
    ).fetchall()
    return in_order(OutboxRow(*row) for row in rows)[:limit]


def get(db: sqlite_utils.Database, row_id: int) -> OutboxRow | None:
    """The row with this id, or None."""
    row = db.conn.execute(f"SELECT {_COLUMNS} FROM {TABLE} WHERE id = ?", (row_id,)).fetchone()
    return OutboxRow(*row) if row else None


def next_due_at(db: sqlite_utils.Database) -> float | None:
    """When the earliest pending row is due, or None if nothing is pending."""
    row = db.conn.execute(f"SELECT MIN(next_attempt_at) FROM {TABLE} WHERE status = ?", (PENDING,)).fetchone()
    return row[0] if row else None


def has_copy(db: sqlite_utils.Database, row: OutboxRow, target: str) -> bool:
    """Whether `target` already has this alert: a fallback copy of the row, or a row of its own for the alert."""
    found = db.conn.execute(
        f"SELECT 1 FROM {TABLE} WHERE fallback_of = ? OR (channel = ? AND alert_id = ?) LIMIT 1",
        (row.id, target, row.alert_id),
    ).fetchone()
    return found is not None


def mark_delivered(db: sqlite_utils.Database, row_id: int, now: float) -> None:
    """Record the row as delivered at `now` (the successful send counts as an attempt); does not commit."""
    db.conn.execute(
        f"UPDATE {TABLE} SET status = ?, attempts = attempts + 1, delivered_at = ? WHERE id = ?",
        (DELIVERED, now, row_id),
    )


def mark_superseded(db: sqlite_utils.Database, row_ids: Iterable[int], by: int) -> None:
    """Record rows as folded into row `by`, which carries the newer state of their position; does not commit."""
    for row_id in row_ids:
        db.conn.execute(
            f"UPDATE {TABLE} SET status = ?, last_error = ? WHERE id = ? AND status = ?",
            (SUPERSEDED, f"superseded by outbox row {by}", row_id, PENDING),
        )


def mark_retry(db: sqlite_utils.Database, row_id: int, now: float, delay: float, error: str) -> None:
    """Count a failed attempt and schedule the next one `delay` seconds after `now`; does not commit."""
    db.conn.execute(
        f"UPDATE {TABLE} SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
        (now + delay, error, row_id),
    )


def mark_waiting(db: sqlite_utils.Database, channel: str, behind: int, error: str) -> None:
    """Say on the channel's other pending rows why they wait (its last failure), without counting an attempt."""
    db.conn.execute(
        f"UPDATE {TABLE} SET last_error = ? WHERE channel = ? AND status = ? AND id != ?",
        (f"waiting: {error}", channel, PENDING, behind),
    )


def mark_failed(db: sqlite_utils.Database, row_id: int, now: float, error: str, *, count_attempt: bool = True) -> None:
    """Give the row up at `now` (kept in next_attempt_at, the time of its last attempt); does not commit."""
    db.conn.execute(
        f"UPDATE {TABLE} SET status = ?, attempts = attempts + ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
        (FAILED, 1 if count_attempt else 0, now, error, row_id),
    )


def depth(db: sqlite_utils.Database) -> int:
    """How many rows are still pending."""
    return db.conn.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE status = ?", (PENDING,)).fetchone()[0]


# --- the relay's writes, each one transaction: `with db.conn:` commits on success and rolls back on an exception


def transaction(db: sqlite_utils.Database) -> sqlite3.Connection:
    """The context in which the marks above commit together: `with transaction(db):` commits or rolls back."""
    return db.conn


def record_retry(db: sqlite_utils.Database, row: OutboxRow, now: float, delay: float, error: str) -> None:
    """Count a failed attempt of `row`, and say on the rows behind it on its channel why they wait; one commit."""
    with db.conn:
        mark_retry(db, row.id, now, delay, error)
        mark_waiting(db, row.channel, row.id, error)


def _enqueue_copy(db: sqlite_utils.Database, row: OutboxRow, target: str) -> int:
    # The copy keeps the alert's time, so on its channel it queues by the alert's age, not the copy's.
    return enqueue(
        db, row.message, target, row.created_at, position=row.position, severity=row.severity, fallback_of=row.id
    )


def add_fallback_copy(db: sqlite_utils.Database, row: OutboxRow, target: str) -> int:
    """Copy `row` to channel `target` as a fallback and return the copy's id; one commit."""
    with db.conn:
        return _enqueue_copy(db, row, target)


def give_up(
    db: sqlite_utils.Database,
    rows: Iterable[OutboxRow],
    now: float,
    error: str,
    fallback: Callable[[OutboxRow], str | None],
    *,
    count_attempt: OutboxRow | None = None,
) -> list[tuple[OutboxRow, int]]:
    """Mark `rows` failed (an attempt counted on `count_attempt` only) and copy each to `fallback(row)`, if it names
    a channel that lacks the alert; one commit, so an alert is never both given up on and not handed over.
    Returns (row, copy id) of the copies made."""
    copies: list[tuple[OutboxRow, int]] = []
    with db.conn:
        for row in rows:
            mark_failed(db, row.id, now, error, count_attempt=row is count_attempt)
            target = fallback(row)
            if target and not has_copy(db, row, target):
                copies.append((row, _enqueue_copy(db, row, target)))
    return copies
