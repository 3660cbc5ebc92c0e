"""A database written by an older watcher opens in this one, and what it held reads as before."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from watcher.store import Store

OLD_POSITIONS = (
    "CREATE TABLE positions (position TEXT PRIMARY KEY, protocol TEXT, chain TEXT, account TEXT, label TEXT,"
    " level TEXT, health TEXT, doc TEXT, updated_at FLOAT, block INTEGER)"
)


def test_positions_of_a_named_deployment_keep_their_name_as_deployment(tmp_path: Path) -> None:
    """Before, a named deployment's positions kept its name under `protocol`; it moves to the new `deployment`."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(OLD_POSITIONS)
    doc = {"id": "aave_local:local:0xabc", "protocol": "aave_local"}
    conn.execute(
        "INSERT INTO positions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ("aave_local:local:0xabc", "aave_local", "local", "0xabc", "alice", "ok", "2", json.dumps(doc), 1.0, 7),
    )
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.db["positions"].get("aave_local:local:0xabc")["deployment"] == "aave_local"
    for filters in ({"deployment": "aave_local"}, {"protocol": "aave_local"}):
        [(found, chain, old)] = store.position_docs(filters, {})
        assert json.loads(found)["id"] == "aave_local:local:0xabc" and chain == "local" and not old
    assert store.position_docs({"deployment": "aave_v3"}, {}) == []
    Store(path)  # opening it again migrates nothing twice
    assert store.db["positions"].count == 1
