"""`?format=csv` on /positions/{id}/history and /alerts, over the store the real daemon filled, on 127.0.0.1."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime
from pathlib import Path

from tests.test_api import API_TOKEN, Client, Reply, Server, World, key, world
from watcher.api import OPENAPI
from watcher.store import Store
from watcher.store.records import AlertRecord

__all__ = ["world"]  # the module-scoped fixture, shared with test_api


def table(reply: Reply) -> list[dict[str, str]]:
    """The rows of a 200 CSV reply, keyed by its header row."""
    assert reply.status == 200, reply.text[:300]
    assert reply.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert reply.headers["Content-Disposition"].startswith('attachment; filename="')
    return list(csv.DictReader(io.StringIO(reply.text)))


def test_history_as_csv(world: World) -> None:
    path = f"/positions/{key(world, world.risky)}/history"
    with Server(world.db, world.cfg) as server:
        c = Client(server.port, world.secrets)
        reply = c.get(f"{path}?format=csv")
        rows = table(reply)
        expected = c.get(path).json()["history"]
        later = table(c.get(f"{path}?format=csv&since={int(expected[-1]['at'])}"))
        explicit_json = c.get(f"{path}?format=json").json()["history"]
    assert reply.text.splitlines()[0] == "at,block,block_hash,health_raw,level,total_collateral_raw,total_debt_raw"
    assert len(rows) == len(expected) == 2 and explicit_json == expected
    for row, doc in zip(rows, expected, strict=True):
        assert row["at"] == doc["at_iso"] and datetime.fromisoformat(row["at"]).utcoffset().total_seconds() == 0
        assert int(row["health_raw"]) == doc["health_raw"] and int(row["block"]) == doc["block"]
        assert int(row["total_collateral_raw"]) == doc["total_collateral_raw"]
        assert int(row["total_debt_raw"]) == doc["total_debt_raw"]
        assert (row["level"], row["block_hash"]) == (doc["level"], doc["block_hash"])
    assert [r["at"] for r in later] == [expected[-1]["at_iso"]]


def test_alerts_as_csv(world: World) -> None:
    with Server(world.db, world.cfg) as server:
        c = Client(server.port, world.secrets)
        rows = table(c.get("/alerts?format=csv"))
        expected = c.get("/alerts").json()["alerts"]
        risky = key(world, world.risky)
        mine = table(c.get(f"/alerts?position={risky}&format=csv&limit=1"))
    assert [r["id"] for r in rows] == [a["id"] for a in expected] and rows
    for row, a in zip(rows, expected, strict=True):
        assert row["created_at"] == a["created_at_iso"] and row["kind"] == a["kind"] and row["text"] == a["text"]
        assert row["health_raw"] == ("" if a["health_raw"] is None else str(a["health_raw"]))
        assert row["open"] == str(a["open"]).lower()
        assert row["deliveries"] == ";".join(f"{d['channel']}:{d['status']}" for d in a["deliveries"])
    assert [r["position"] for r in mine] == [risky]


def test_bad_format_is_400_naming_it(world: World) -> None:
    with Server(world.db, world.cfg) as server:
        c = Client(server.port, world.secrets)
        for path in (f"/positions/{key(world, world.risky)}/history?format=xml", "/alerts?format=CSV"):
            reply = c.get(path)
            assert reply.status == 400 and reply.json()["error"]["message"].startswith("format: "), reply.text
            assert "json, csv" in reply.json()["error"]["message"]
        # The parameter is checked before the id is looked up, as `since` and `limit` are.
        assert c.get("/positions/nope/history?format=xml").status == 400
        assert c.get("/positions/nope/history?format=csv").status == 404


def test_stored_text_never_becomes_a_spreadsheet_formula(world: World, tmp_path: Path) -> None:
    db = tmp_path / "formula.db"
    now = time.time()
    formula = '=HYPERLINK("http://127.0.0.1:9/","x")'
    alert = AlertRecord("a1", "aave_local:local:x", "fire", "warn", 12 * 10**17, now, formula, '-2+3, "quoted"\nnext')
    Store(db).commit(now=now, states={}, alerts=[alert], channels=["telegram"])
    with Server(db, world.cfg, token=API_TOKEN) as server:
        [row] = table(Client(server.port, world.secrets).get("/alerts?format=csv"))
    assert row["subject"] == "'" + formula and row["text"] == '\'-2+3, "quoted"\nnext'
    assert row["health_raw"] == str(12 * 10**17) and row["deliveries"] == "telegram:pending"


def test_openapi_describes_the_format_parameter() -> None:
    for path in ("/positions/{id}/history", "/alerts"):
        op = OPENAPI["paths"][path]["get"]
        [fmt] = [p for p in op["parameters"] if p["name"] == "format"]
        assert fmt["schema"]["enum"] == ["json", "csv"] and not fmt["required"]
        assert {"application/json", "text/csv"} <= set(op["responses"]["200"]["content"])
    assert {"text/html"} == set(OPENAPI["paths"]["/"]["get"]["responses"]["200"]["content"])
