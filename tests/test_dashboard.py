"""The dashboard's HTML pages, parsed as a DOM, over a store the real daemon filled (Aave on anvil), on 127.0.0.1.

Every request goes through test_api's `Client`, which fails on any secret (the API token included) in a reply.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.dom import Node, parse
from tests.test_api import (
    API_TOKEN,
    BOT_TOKEN,
    Client,
    Reply,
    Server,
    World,
    key,
    read_then_lose_the_node,
    world,
)
from tests.test_api_hardening import api_cfg
from watcher.api import make_app, serve
from watcher.api.dashboard import GROUPS
from watcher.store import Store
from watcher.store.records import AlertRecord, HistoryRow

__all__ = ["world"]  # the module-scoped fixture, shared with test_api


def page(reply: Reply) -> Node:
    """The parsed page of a 200 HTML reply, checked for what every page must (and must not) carry."""
    assert reply.status == 200, reply.text[:300]
    assert reply.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in reply.headers["Content-Security-Policy"]
    dom = parse(reply.text)
    assert dom.find_all("script") == [], "the dashboard needs no script"
    return dom


def rows_of(dom: Node, level: str) -> list[Node]:
    return dom.find("section", data_level=level).find_all("tr", class_="position")


def test_index_lists_positions_grouped_by_level(world: World) -> None:
    with Server(world.db, world.cfg) as server:
        c = Client(server.port, world.secrets)
        dom = page(c.get("/"))  # loopback with a token configured: reads are open, as GET /positions
        docs = {d["id"]: d for d in c.get("/positions").json()["positions"]}
    sections = dom.find_all("section", class_="level")
    assert [s.attrs["data-level"] for s in sections] == list(GROUPS)
    risky, safe = key(world, world.risky), key(world, world.safe)
    [liq] = rows_of(dom, "liquidatable")
    [ok] = rows_of(dom, "ok")
    assert (liq.attrs["data-id"], ok.attrs["data-id"]) == (risky, safe)
    assert all(rows_of(dom, level) == [] for level in ("critical", "warn", "unknown"))
    assert dom.find("section", data_level="liquidatable").find("h2").text == "liquidatable (1)"
    assert dom.find_all(id="degraded") == []  # healthy: no banner

    health = liq.find("td", class_="health")
    assert health.attrs["data-health-raw"] == str(docs[risky]["health_raw"])
    shown = Decimal(health.text)
    assert shown <= Decimal(docs[risky]["health"]) < shown + Decimal("0.0001")  # rounded down, never safer
    [link] = liq.find_all("a")
    assert link.attrs["href"] == "/ui/positions/" + risky and link.text == docs[risky]["label"]
    lp = next(x for x in docs[risky]["liquidation_prices"] if x["symbol"] == "WETH")
    assert f"WETH {lp['price']} USD" in liq.text and lp["direction"] in liq.text
    top_up = docs[risky]["advice"]["top_ups"][0]
    assert f"add {top_up['amount']} {top_up['symbol']}" in liq.text


def test_position_page_charts_its_history_with_alerts_and_silences(world: World) -> None:
    risky = key(world, world.risky)
    with Server(world.db, world.cfg) as server:
        c = Client(server.port, world.secrets)
        made = c.post("/silences", {"position": risky, "until": time.time() + 3600}, token=API_TOKEN).json()
        try:
            dom = page(c.get(f"/ui/positions/{quote(risky)}"))
            history = c.get(f"/positions/{risky}/history").json()["history"]
            found = c.get(f"/alerts?position={risky}").json()["alerts"]
        finally:
            c.request("DELETE", f"/silences/{made['id']}", token=API_TOKEN)
    assert dom.find("h2", id="position").attrs["data-level"] == "liquidatable"
    svg_health = dom.find("svg", aria_label="health")
    points = svg_health.find_all("circle", data_series="health")
    assert len(history) == 2 and [int(p.attrs["data-raw"]) for p in points] == [h["health_raw"] for h in history]
    assert [p.attrs["data-at"] for p in points] == [h["at_iso"] for h in history]
    [line] = svg_health.find_all("polyline")
    assert len(line.attrs["points"].split()) == len(points)
    ys = [float(p.attrs["cy"]) for p in points]
    assert ys[1] > ys[0]  # health fell: the later point is lower on the chart
    rules = {r.attrs["data-threshold"]: r.attrs["data-value"] for r in svg_health.find_all("line", class_="rule")}
    assert rules == {"warn": "1.25", "critical": "1.1", "liquidation": "1"}
    # Prices are not in the history table: the totals are charted instead, and the page says so.
    values = dom.find("svg", aria_label="collateral and debt (USD)")
    assert [int(p.attrs["data-raw"]) for p in values.find_all("circle", data_series="debt")] == [
        h["total_debt_raw"] for h in history
    ]
    assert "not the asset prices" in dom.find("p", id="no-prices").text
    assert len(dom.find("table", id="readings").find_all("tr")) == 1 + len(history)
    alert_ids = [r.attrs["data-id"] for r in dom.find("table", id="alerts").find_all("tr", class_="alert")]
    assert alert_ids == [a["id"] for a in found] and alert_ids
    [silence] = dom.find("table", id="silences").find_all("tr", class_="silence")
    assert silence.find_all("td")[0].text == str(made["id"]) and risky in silence.text


def test_the_chart_draws_the_positions_own_thresholds(world: World) -> None:
    # An override for one position: the chart's lines are the thresholds the daemon judges it by.
    extra = f'\n[[alerts.overrides]]\naccount = "{world.risky}"\nprotocol = "aave_local"\nwarn = 1.4\ncritical = 1.2\n'
    cfg = api_cfg(world, extra)
    with Server(world.db, cfg) as server:
        c = Client(server.port, world.secrets)
        risky = page(c.get(f"/ui/positions/{key(world, world.risky)}"))
        safe = page(c.get(f"/ui/positions/{key(world, world.safe)}"))
    lines = {r.attrs["data-threshold"]: r.attrs["data-value"] for r in risky.find_all("line", class_="rule")}
    assert lines == {"warn": "1.4", "critical": "1.2", "liquidation": "1"}
    lines = {r.attrs["data-threshold"]: r.attrs["data-value"] for r in safe.find_all("line", class_="rule")}
    assert lines == {"warn": "1.25", "critical": "1.1", "liquidation": "1"}


def test_a_degraded_chain_shows_a_banner(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MW_TEST_TG_TOKEN", BOT_TOKEN)
    db = tmp_path / "down.db"
    cfg, _ = read_then_lose_the_node(world, db, checks=1)
    with Server(db, cfg) as server:
        client = Client(server.port, world.secrets)
        dom = page(client.get("/"))
        reason = client.get("/health").json()["chains"]["local"]["reason"]
        one = page(client.get(f"/ui/positions/{key(world, world.risky)}"))
    banner = dom.find("div", id="degraded")
    assert banner.attrs["role"] == "alert" and "every RPC failed" in reason
    assert [li.text for li in banner.find_all("li")] == [f"local: {reason}"]
    assert one.find("div", id="degraded").text == banner.text  # on every page
    [row] = rows_of(dom, "unknown")
    assert row.attrs["data-id"] == key(world, world.risky)


HOSTILE = "<script>alert(1)</script>\"'&<img src=x onerror=alert(2)>"


def test_hostile_text_is_escaped(world: World, tmp_path: Path) -> None:
    db = tmp_path / "hostile.db"
    now = time.time()
    pid = f'aave_local:local:{world.safe}"><b>x'
    doc = {
        "id": pid,
        "protocol": "aave_local",
        "chain": "local",
        "account": world.safe,
        "label": HOSTILE,
        "level": "warn",
        "health_raw": 12 * 10**17,
        "health": "1.2",
        "base_currency": "USD",
        "base_unit": 10**8,
        "liquidation_prices": [{"symbol": HOSTILE, "price": "1", "move_pct": "-1", "direction": "down"}],
        "advice": {"top_ups": [{"symbol": HOSTILE, "amount": "1", "health_after_raw": 15 * 10**17}]},
        "updated_at": now,
    }
    row = {"position": pid, "protocol": "aave_local", "chain": "local", "account": world.safe, "label": HOSTILE}
    row |= {"level": "warn", "health": str(12 * 10**17), "doc": json.dumps(doc), "updated_at": now, "block": 1}
    alert = AlertRecord("a1", pid, "fire", "warn", 12 * 10**17, now, HOSTILE, HOSTILE)
    history = [HistoryRow(pid, now - 60 * i, 10 - i, "0x00", (12 + i) * 10**17, "warn", 10**8, 10**7) for i in (2, 1)]
    Store(db).commit(
        now=now,
        states={},
        alerts=[alert],
        channels=["telegram"],
        history=history,
        chain_status={"local": {"degraded": 1, "since": now, "reason": HOSTILE, "last_ok": now}},
        positions=[row],
    )
    with Server(db, world.cfg) as server:
        c = Client(server.port, world.secrets)
        index = c.get("/")
        one = c.get("/ui/positions/" + quote(pid, safe=""))
    for reply in (index, one):
        dom = page(reply)  # no <script> element: the label stayed text
        assert dom.find_all("img") == [] and dom.find_all("b") == []
        assert HOSTILE in dom.text and HOSTILE not in reply.text
    [link] = parse(index.text).find("tr", class_="position").find_all("a")
    assert link.attrs["href"] == "/ui/positions/" + quote(pid, safe=":")
    assert parse(one.text).find("h2", id="position").attrs["data-id"] == pid
    assert len(parse(one.text).find_all("circle", data_series="health")) == 2


def test_dashboard_host_and_token_rules(world: World) -> None:
    # Off loopback (a wildcard bind) every read needs the token: the dashboard takes it by the browser's own Basic
    # login prompt (and so do the JSON and CSV reads its pages link to), or as a bearer token; never from the query
    # string; and Basic never authorises a write.
    app = make_app(Store(world.db), world.cfg, token=API_TOKEN, host="0.0.0.0", port=0)
    basic = "Basic " + base64.b64encode(f"me:{API_TOKEN}".encode()).decode()
    wrong = "Basic " + base64.b64encode(b"me:guess").decode()

    async def probe() -> dict[str, tuple[int, str]]:
        import aiohttp

        runner, port = await serve(app, "127.0.0.1", 0)
        out = {}
        try:
            async with aiohttp.ClientSession() as s:
                cases = {
                    "anonymous": ("GET", "/", {}),
                    "wrong": ("GET", "/", {"Authorization": wrong}),
                    "basic": ("GET", "/", {"Authorization": basic}),
                    "bearer": ("GET", "/", {"Authorization": f"Bearer {API_TOKEN}"}),
                    "query": ("GET", f"/?token={API_TOKEN}", {"Authorization": basic}),
                    "query_anonymous": ("GET", f"/?token={API_TOKEN}", {}),
                    "basic_csv": ("GET", "/alerts?format=csv", {"Authorization": basic}),
                    "anonymous_json": ("GET", "/positions", {}),
                    "basic_write": ("POST", "/alerts/x/ack", {"Authorization": basic}),
                    "rebinding": ("GET", "/", {"Authorization": basic, "Host": f"evil.example:{port}"}),
                }
                for name, (method, path, headers) in cases.items():
                    async with s.request(method, f"http://127.0.0.1:{port}{path}", headers=headers) as r:
                        text = await r.text()
                        assert API_TOKEN not in text
                        out[name] = (r.status, r.headers.get("WWW-Authenticate", "") + " " + text[:200])
        finally:
            await runner.cleanup()
        return out

    got = asyncio.run(probe())
    assert got["anonymous"][0] == got["wrong"][0] == 401 and got["anonymous"][1].startswith("Basic realm=")
    assert got["basic"][0] == got["bearer"][0] == 200
    assert got["query"][0] == 400 and "unknown query parameter 'token'" in got["query"][1]
    assert got["query_anonymous"][0] == 401  # the token in the URL is not read at all
    assert got["basic_csv"][0] == 200 and got["basic_csv"][1].startswith(" id,position,kind,level")
    # The JSON API's challenge is unchanged: a 401 there asks for a bearer token, not a browser prompt.
    assert got["anonymous_json"][0] == 401 and got["anonymous_json"][1].startswith("Bearer ")
    assert got["basic_write"][0] == 401
    assert got["rebinding"][0] == 421


def test_unknown_position_page_is_404_and_bad_queries_400(world: World) -> None:
    with Server(world.db, world.cfg) as server:
        c = Client(server.port, world.secrets)
        missing = c.get("/ui/positions/aave_local:local:0xnope")
        bad = c.get("/?level=ok")
    assert missing.status == 404 and missing.json()["error"]["status"] == 404
    assert bad.status == 400 and "level" in bad.json()["error"]["message"]
