"""The store's tables: created if missing, and columns a newer schema added put on an older file."""

from __future__ import annotations

import sqlite_utils

from watcher.store import outbox

SCHEMA_VERSION = 2

#: every table, in creation order: its name, the columns it is created with, its primary key (None: rowid)
_TABLES: tuple[tuple[str, dict[str, type], str | None], ...] = (
    ("meta", {"key": str, "value": str}, "key"),
    ("alert_state", {"position": str, "state": str, "updated_at": float}, "position"),
    (
        "alerts",
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
        "id",
    ),
    (
        "history",
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
        None,
    ),
    (
        "chain_status",
        {"chain": str, "degraded": int, "since": float, "reason": str, "last_ok": float, "last_block": int},
        "chain",
    ),
    (
        "positions",
        {
            "position": str,
            "protocol": str,
            "deployment": str,
            "chain": str,
            "account": str,
            "label": str,
            "level": str,
            "health": str,
            "doc": str,
            "updated_at": float,
            "block": int,
        },
        "position",
    ),
    ("silences", {"id": int, "account": str, "position": str, "until": float, "created_at": float}, "id"),
    #: the prices a check read, sampled every probability.readings_every: a price history where the oracle keeps none
    ("price_readings", {"chain": str, "deployment": str, "asset": str, "at": float, "price": str}, None),
)
#: indexes by table, each made right after its table (so the file's schema reads as it always did)
_INDEXES: dict[str, list[list[str]]] = {
    "history": [["position", "at"]],
    "price_readings": [["chain", "deployment", "asset", "at"]],
}


_SQL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT"}


def _add_columns(db: sqlite_utils.Database, table: str, columns: dict[str, type]) -> bool:
    """Add the columns `table` lacks; whether any was added."""
    have = set(db[table].columns_dict)
    added = False
    for name, kind in columns.items():
        if name not in have:
            db.execute(f"ALTER TABLE [{table}] ADD COLUMN [{name}] {_SQL_TYPES[kind]}")
            added = True
    return added


def migrate(db: sqlite_utils.Database) -> None:
    """Bring the file to SCHEMA_VERSION: every table and index, in one transaction, then the outbox's."""
    with db.atomic():
        for name, columns, pk in _TABLES:
            db[name].create(columns, pk=pk, if_not_exists=True)
            for index in _INDEXES.get(name, []):
                db[name].create_index(index, if_not_exists=True)
        # Columns added in schema 2 to tables that schema 1 already created.
        _add_columns(db, "alerts", {"silenced": int})
        _add_columns(db, "chain_status", {"last_check_seconds": float, "rpc_errors": int})
        # A named deployment's positions kept its name under `protocol` before: the name moves to `deployment`, and
        # `protocol` is filled with the protocol family at the next check.
        if _add_columns(db, "positions", {"deployment": str}):
            db.execute("update positions set deployment = protocol where deployment is null")
        db["meta"].upsert({"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key")
    outbox.ensure_schema(db)
