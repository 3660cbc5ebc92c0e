"""The durable outbox: one SQLite row per message and channel, written with the alert it belongs to."""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from watcher.notify.base import Message

TABLE = "outbox"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

# Every function below writes through `db.conn.execute`, never sqlite-utils' write methods: those commit by
# themselves when no transaction is open, and the outbox rows must commit with the caller's own changes or not at all.
# Python's sqlite3 (default isolation level) opens a transaction at the first INSERT/UPDATE and leaves it open, so
# whoever calls these ends it (`with db.conn:` commits on success and rolls back on an exception).


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

    @property
    def message(self) -> Message:
        """The message this row carries."""
        return Message(alert_id=self.alert_id, subject=self.subject, text=self.text)


_COLUMNS = ", ".join(OutboxRow.__dataclass_fields__)


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Create the outbox table and its (status, next_attempt_at) index if they do not exist yet."""
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
        },
        pk="id",
        not_null={"alert_id", "channel", "subject", "text", "created_at", "status", "attempts"},
        defaults={"status": PENDING, "attempts": 0},
        if_not_exists=True,
    )
    db.table(TABLE).create_index(["status", "next_attempt_at"], if_not_exists=True)


def enqueue(
    db: sqlite_utils.Database, message: Message, channel: str, now: float, fallback_of: int | None = None
) -> int:
    """Add a pending row and return its id; it never commits: run it in the caller's transaction (`with db.conn:`)."""
    # With sqlite-utils 4, a write made through sqlite-utils (db[...].insert/update, db.execute) before this call inside
    # `with db.conn:` commits on its own; `with db.atomic():` makes every write in the block one transaction.
    cursor = db.conn.execute(
        f"INSERT INTO {TABLE} (alert_id, channel, subject, text, created_at, status, attempts, next_attempt_at,"
        " fallback_of) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
        (message.alert_id, channel, message.subject, message.text, now, PENDING, now, fallback_of),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def due(db: sqlite_utils.Database, now: float, limit: int = 100) -> list[OutboxRow]:
    """Pending rows whose next attempt is due at `now`, oldest first."""
    rows = db.conn.execute(
        f"SELECT {_COLUMNS} FROM {TABLE} WHERE status = ? AND next_attempt_at <= ? ORDER BY created_at, id LIMIT ?",
        (PENDING, now, limit),
    ).fetchall()
    return [OutboxRow(*row) for row in rows]


def get(db: sqlite_utils.Database, row_id: int) -> OutboxRow | None:
    """The row with this id, or None."""
    row = db.conn.execute(f"SELECT {_COLUMNS} FROM {TABLE} WHERE id = ?", (row_id,)).fetchone()
    return OutboxRow(*row) if row else None


def next_due_at(db: sqlite_utils.Database) -> float | None:
    """When the earliest pending row is due, or None if nothing is pending."""
    row = db.conn.execute(f"SELECT MIN(next_attempt_at) FROM {TABLE} WHERE status = ?", (PENDING,)).fetchone()
    return row[0] if row else None


def mark_delivered(db: sqlite_utils.Database, row_id: int, now: float) -> None:
    """Record the row as delivered at `now` (the successful send counts as an attempt); does not commit."""
    db.conn.execute(
        f"UPDATE {TABLE} SET status = ?, attempts = attempts + 1, delivered_at = ? WHERE id = ?",
        (DELIVERED, now, row_id),
    )


def mark_retry(db: sqlite_utils.Database, row_id: int, now: float, delay: float, error: str) -> None:
    """Count a failed attempt and schedule the next one `delay` seconds after `now`; does not commit."""
    db.conn.execute(
        f"UPDATE {TABLE} SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
        (now + delay, error, row_id),
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
