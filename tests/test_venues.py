"""Off-chain venues in the daemon: config, scheduled reads through a real HTTP stand-in, degraded and recovered alerts.

The Hyperliquid stand-in (tests/hyperliquid_server.py) serves documented-shape answers on 127.0.0.1; the daemon
reads it exactly as `watcher run` does, and a broken answer must mark the venue's positions unknown, raise one
"degraded" alert and never crash or read as healthy.
"""

from __future__ import annotations

import asyncio
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_utils import to_checksum_address

from tests.hyperliquid_server import HyperliquidStandIn
from tests.test_hyperliquid import ACCOUNTS, CROSS, CROSS_LIQ, ISO, META, TIERED, world
from watcher.check import CheckResult, build, build_venues, check_venues
from watcher.config import ConfigError, parse_config, resolve_venues
from watcher.daemon import Daemon
from watcher.store import Store

WAD = 10**18


def _config(url: str, db: Path, extra: str = "") -> dict[str, Any]:
    import tomllib

    accounts = "\n".join(f'[[accounts]]\naddress = "{a.address}"\nlabel = "{a.label}"\n' for a in ACCOUNTS)
    return tomllib.loads(
        f"""
[venues.hl]
protocol = "hyperliquid"
base_url = "{url}"
interval = 1
timeout = 5
{extra}

[storage]
path = "{db}"

{accounts}
"""
    )


def test_venue_config_defaults_and_errors(tmp_path: Path) -> None:
    cfg = parse_config(_config("http://127.0.0.1:9", tmp_path / "db"))
    [venue] = resolve_venues(cfg)
    assert (venue.adapter, venue.base_url, venue.interval) == ("hyperliquid", "http://127.0.0.1:9", 1.0)
    assert [a.address for a in venue.accounts] == [a.address.lower() for a in ACCOUNTS] or len(venue.accounts) == 3
    assert build(cfg) == []  # no chains: nothing on-chain to read, and no RPC is needed
    [reader] = build_venues(cfg)
    assert (reader.protocol, reader.chain, len(reader.accounts)) == ("hyperliquid", "hl", 3)
    # the default base URL comes from protocols/hyperliquid.toml
    data = _config("x", tmp_path / "db")
    del data["venues"]["hl"]["base_url"]
    [venue] = resolve_venues(parse_config(data))
    assert venue.base_url.startswith("https://")
    bad = _config("x", tmp_path / "db")
    bad["venues"]["hl"]["protocol"] = "aave_v3"
    with pytest.raises(ConfigError, match=r"venues\.hl\.protocol: 'aave_v3' is not an off-chain venue"):
        resolve_venues(parse_config(bad))
    bad = _config("ftp://example", tmp_path / "db")
    with pytest.raises(ConfigError, match=r"venues\.hl\.base_url: give an http\(s\) URL") as err:
        resolve_venues(parse_config(bad))
    assert "ftp" not in str(err.value)  # a base URL may carry a key: never echoed
    dydx = _config("http://127.0.0.1:9", tmp_path / "db")
    dydx["venues"]["dx"] = {"protocol": "dydx_v4", "accounts": [{"address": "dydx1notanaddress"}]}
    with pytest.raises(
        ConfigError,
        match=r"venues\.dx\.accounts\[0\]\.address: dYdX address 'dydx1notanaddress' has characters outside bech32",
    ):
        resolve_venues(parse_config(dydx))
    typo = _config("http://127.0.0.1:9", tmp_path / "db")
    typo["venues"]["hl"]["intervall"] = 3
    with pytest.raises(ConfigError, match=r"venues\.hl\.intervall: unknown key"):
        parse_config(typo)


def _alerts(store: Store) -> list[dict[str, Any]]:
    return list(store.db.query("select id, position, kind, level, text from alerts order by created_at, id"))


async def _scenario(tmp_path: Path) -> tuple[Daemon, list[list[dict[str, Any]]]]:
    mids, states = world(Fraction(95_000), Fraction(3_100))
    async with HyperliquidStandIn(META, mids, states) as server:
        cfg = parse_config(_config(server.url, tmp_path / "w.db"))
        store = Store(cfg.storage.path)
        now = [1_000.0]
        daemon = Daemon(cfg, {}, [], store, {}, clock=lambda: now[0], venues=build_venues(cfg))
        snapshots = []
        async with aiohttp.ClientSession() as session:
            daemon._session = session

            async def tick(seconds: float = 10.0) -> None:
                now[0] += seconds
                await daemon.run_venue("hl")
                snapshots.append(_alerts(store))

            await tick()  # all healthy
            # BTC falls to one dollar under the cross account's liquidation price: the venue says liquidatable
            new_mids, new_states = world(CROSS_LIQ - 1, Fraction(3_100))
            server.mids.update(new_mids)
            server.states.update(new_states)
            await tick()
            server.fault = "http500"
            await tick()
            await tick()  # still broken: no second "degraded"
            server.fault = "badjson"
            await tick()
            server.fault = None
            await tick()  # recovered
        return daemon, snapshots


def test_daemon_reads_a_venue_and_a_broken_venue_is_degraded_never_healthy(tmp_path: Path) -> None:
    daemon, snaps = asyncio.run(_scenario(tmp_path))
    assert snaps[0] == []  # everyone healthy at BTC 95,000
    liq = [a for a in snaps[1] if a["level"] == "liquidatable" and a["kind"] == "fire"]
    assert [a["position"] for a in liq] == [f"hyperliquid:hl:{to_checksum_address(CROSS)}"]
    text = liq[0]["text"]
    assert "BTC long 1 @ 79,999" in text and "tier 0 MMR 1%" in text and "liq 80,000" in text
    assert "To reach 1.5000: add $" in text and "to cross margin" in text
    degraded = [a for a in snaps[-1] if a["kind"] == "degraded"]
    recovered = [a for a in snaps[-1] if a["kind"] == "recovered"]
    assert len(degraded) == 1 and len(recovered) == 1
    assert "HTTP 500" in degraded[0]["text"] and "UNKNOWN, not healthy" in degraded[0]["text"]
    # while broken, the positions are marked unknown, not left at their last (healthy) reading
    store = daemon.store
    rows = {r["position"]: r for r in store.db.query("select position, level, doc from positions")}
    keys = {a: f"hyperliquid:hl:{to_checksum_address(a)}" for a in (CROSS, ISO, TIERED)}
    assert {rows[keys[a]]["level"] for a in (ISO, TIERED)} == {"ok"}  # recovered: read again
    doc = json.loads(rows[keys[CROSS]]["doc"])
    [perp] = doc["perps"]
    assert (perp["market"], perp["side"], perp["tier"], perp["margin_mode"]) == ("BTC", "long", 0, "cross")
    assert perp["liquidation_price"]["exact"] == "80000" and perp["venue_liquidation_price"]["value"] == "80000"
    assert perp["requirement_raw"] == 799_990_000  # 1% of 79,999 USD in micro-USD
    assert doc["margin_top_ups"][0]["scope"] == "cross"
    status = store.chain_status()["hl"]
    assert status["degraded"] == 0 and status["rpc_errors"] >= 3


async def _broken_once(tmp_path: Path, fault: str) -> list[str]:
    mids, states = world(Fraction(95_000), Fraction(3_100))
    async with HyperliquidStandIn(META, mids, states) as server:
        server.fault = fault
        cfg = parse_config(_config(server.url, tmp_path / f"{fault}.db"))
        daemon = Daemon(cfg, {}, [], Store(cfg.storage.path), {}, venues=build_venues(cfg))
        async with aiohttp.ClientSession() as session:
            daemon._session = session
            result = await daemon.read_venue("hl")
            assert not result.positions and "hl" in result.degraded
            daemon.process("hl", result)
        unknown = daemon.store.db.execute("select count(*) from positions where level = 'unknown'").fetchone()[0]
        assert unknown == 0  # never read: nothing stored as healthy either
        return [a["kind"] for a in _alerts(daemon.store)]


@pytest.mark.parametrize("fault", ["http500", "badjson"])
def test_a_venue_broken_from_the_start_raises_degraded(tmp_path: Path, fault: str) -> None:
    assert asyncio.run(_broken_once(tmp_path, fault)) == ["degraded"]


async def _two_venues(tmp_path: Path, fault: str | None) -> CheckResult:
    from tests.dydx_server import DydxIndexerStandIn
    from tests.test_dydx_v4 import A, B, _markets, _subaccounts

    mids, states = world(Fraction(95_000), Fraction(3_100))
    async with (
        HyperliquidStandIn(META, mids, states) as hl,
        DydxIndexerStandIn(_markets(), _subaccounts()) as dx,
    ):
        dx.fault = fault
        data = _config(hl.url, tmp_path / "two.db")
        data["venues"]["dx"] = {
            "protocol": "dydx_v4",
            "base_url": dx.url,
            "accounts": [
                {"address": A.upper(), "label": "alice", "subaccounts": [0, 128]},
                {"address": B, "label": "bob"},
            ],
        }
        return await check_venues(build_venues(parse_config(data)))


def test_two_venues_read_together_and_one_failing_leaves_the_other(tmp_path: Path) -> None:
    result = asyncio.run(_two_venues(tmp_path, None))
    assert not result.unreadable and not result.degraded
    by_venue = sorted((p.chain, p.protocol, p.details.get("market_id")) for p in result.positions)
    assert by_venue == [
        ("dx", "dydx_v4", "sub0"),
        ("dx", "dydx_v4", "sub0"),
        ("dx", "dydx_v4", "sub128"),
        ("hl", "hyperliquid", None),
        ("hl", "hyperliquid", None),
        ("hl", "hyperliquid", None),
    ]
    broken = asyncio.run(_two_venues(tmp_path, "http500"))
    assert set(broken.degraded) == {"dx"} and "HTTP 500" in broken.degraded["dx"]
    assert {u.chain for u in broken.unreadable} == {"dx"} and len(broken.unreadable[0].accounts) == 2
    assert {p.chain for p in broken.positions} == {"hl"}  # the other venue is read as usual


def test_watcher_check_reads_a_venue_and_reports_it_unknown_when_broken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading

    from watcher.cli import main

    mids, states = world(Fraction(95_000), Fraction(3_100))
    server = HyperliquidStandIn(META, mids, states)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.__aenter__())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    path = tmp_path / "venue.toml"
    accounts = "\n".join(f'[[accounts]]\naddress = "{a.address}"\nlabel = "{a.label}"\n' for a in ACCOUNTS)
    path.write_text(f'[venues.hl]\nprotocol = "hyperliquid"\nbase_url = "{server.url}"\n\n{accounts}')
    try:
        assert main(["check", "--config", str(path), "--json"]) == 0  # everyone is healthy at BTC 95,000
        doc = json.loads(capsys.readouterr().out)
        assert len(doc["positions"]) == 3 and not doc["unknown"]
        cross = next(p for p in doc["positions"] if p["label"] == "cross-btc")
        assert cross["perps"][0]["liquidation_price"]["value"] == "80000"
        server.fault = "http500"
        assert main(["check", "--config", str(path), "--json"]) == 3  # unknown, never healthy
        doc = json.loads(capsys.readouterr().out)
        assert doc["positions"] == [] and "HTTP 500" in doc["unknown"][0]["reason"]
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
