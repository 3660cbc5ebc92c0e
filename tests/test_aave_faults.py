"""Bad answers never read as healthy: a broken price feed makes only its users unknown, garbage is a ReadError."""

from __future__ import annotations

import asyncio

import pytest

from tests.aave_helpers import Watcher, batch_reader
from watcher.adapters.base import ReadError
from watcher.devchain.aave import AaveMarket
from watcher.devchain.deploy import Tx, send_txs
from watcher.model import BlockRef


def test_broken_price_feed_makes_only_its_users_unknown(aave_market: AaveMarket) -> None:
    m = aave_market
    weth_user = m.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 5_000 * 10**6})
    btc_user = m.open_position(None, {"WBTC": 10**8}, {"DAI": 10_000 * 10**18})
    w = Watcher(m, [weth_user, btc_user])
    assert set(w.positions()) == {weth_user, btc_user}
    # Point WETH's price source at a contract with no latestAnswer(): the oracle reverts for WETH.
    data = m.oracle.encode_abi("setAssetSources", args=[[m.assets["WETH"]], [batch_reader(m.w3)]])
    send_txs(m.w3, [Tx(m.admin, m.oracle.address, data, 500_000, "break WETH feed")])
    result = w.check()
    assert [p.account for p in result.positions] == [btc_user]
    [unknown] = result.unreadable
    assert unknown.accounts[0].address == weth_user and "oracle price of WETH reverted" in unknown.reason


def _learned(m: AaveMarket) -> tuple[Watcher, list[tuple[bool, bytes]], BlockRef]:
    user = m.open_position(None, {"USDC": 20_000 * 10**6}, {"DAI": 5_000 * 10**18}, emode=1)
    w = Watcher(m, [user])
    w.positions()
    calls = w.reader.calls()
    block = m.w3.eth.block_number
    ts, results = asyncio.run(w.client.read(calls, block))
    return w, results, BlockRef(block, ts)


def _corrupt(w: Watcher, results: list[tuple[bool, bytes]], kind: str, answer: tuple[bool, bytes]) -> list:
    out = list(results)
    hits = [i for i, tag in enumerate(w.reader._plan) if tag[0] == kind]
    assert hits, kind
    out[hits[0]] = answer
    return out


@pytest.mark.parametrize(
    ("kinds", "answer", "reason"),
    [
        (("ucfg",), (False, b""), "call ucfg"),
        (("ucfg",), (True, b"\x01" * 7), "returned 7 bytes"),
        (("pool",), (True, b"\xff" * 32), "malformed answer"),
        (("rd",), (True, b"\x00" * 64), "malformed answer"),
        (("ecfg", "ecat"), (True, b"\x00" * 31), "malformed answer"),
        (("list",), (True, b"\x00" * 5), "malformed answer"),
    ],
)
def test_garbage_answers_are_read_errors(
    aave_market: AaveMarket, kinds: tuple[str, ...], answer: tuple[bool, bytes], reason: str
) -> None:
    w, results, block = _learned(aave_market)
    kind = next(k for k in kinds if any(t[0] == k for t in w.reader._plan))
    with pytest.raises(ReadError, match=reason):
        w.reader.parse(_corrupt(w, results, kind, answer), block)


def test_untouched_answers_parse(aave_market: AaveMarket) -> None:
    w, results, block = _learned(aave_market)
    positions = w.reader.parse(results, block)
    assert positions is not None and positions[0].has_debt


def test_unverified_revision_is_cross_checked_by_the_pool(
    aave_market: AaveMarket, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watcher.adapters.aave_v3 as adapter

    monkeypatch.setattr(adapter, "VERIFIED_REVISIONS", frozenset())  # pretend this Pool's revision is untested
    m = aave_market
    user = m.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
    p = Watcher(m, [user]).positions()[user]
    assert p.details["pool_health_factor"] == m.account_data(user, p.block.number)[5] == p.health
    assert p.details["replay_matches_pool"] is True
