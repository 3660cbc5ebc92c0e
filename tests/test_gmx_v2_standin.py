"""The GMX v2 adapter against our GMX stand-in contracts (not GMX's code): its replay equals the stand-in's check."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Any

import pytest
from web3 import Web3

from tests.aave_helpers import latest_timestamp, local_client, next_block_at
from watcher.adapters.base import Account, ReadError
from watcher.adapters.gmx_v2 import (
    FLOAT,
    GmxPositionSim,
    GmxV2Reader,
    key_min_collateral_usd,
    make_reader,
    market_key,
    position_key,
    token_key,
)
from watcher.check import CheckResult, run_check
from watcher.devchain.comet import new_addresses
from watcher.devchain.gmx import (
    GmxStandIn,
    deploy_gmx_stand_in,
    max_pnl_factor_key,
    open_interest_in_tokens_key,
    open_interest_key,
    pool_amount_key,
)
from watcher.model import WAD, BlockRef
from watcher.risk import perp_top_ups

ETH, BTC, USDC = 10**18, 10**8, 10**6
USD = FLOAT
ETH_UNIT = 10**12  #: GMX price of WETH per wei for 1 USD/ETH: 1e30 / 1e18
USDC_UNIT = 10**24  #: 1e30 / 1e6


class StandInWatcher:
    """The watcher's real read path (ChainClient + run_check) over the stand-in."""

    def __init__(self, gmx: GmxStandIn, users: list[str]) -> None:
        w3 = gmx.w3
        self.client = local_client(w3)
        accounts = [Account(u, u[:8]) for u in users]
        self.reader = GmxV2Reader(
            "gmx_v2", "local", gmx.reader.address, gmx.data_store.address, accounts, symbols=gmx.symbols()
        )

    def check(self, readable: bool = True) -> CheckResult:
        """One check, as `watcher check` runs it."""
        result = run_check({"local": self.client}, [self.reader])
        if readable:
            assert not result.unreadable, result.unreadable
        return result


# --- by hand


def _short_sim() -> GmxPositionSim:
    """A short of 20 ETH opened at 2500 (50,000 USD) with 5,000 USDC, marked at 2,600 USD/ETH."""
    return GmxPositionSim(
        is_long=False,
        size_usd=50_000 * USD,
        size_tokens=20 * ETH,
        collateral_amount=5_000 * USDC,
        pending_impact_amount=-(10**16),  # -0.01 ETH of pending negative impact
        index_token="0x" + "11" * 20,
        collateral_token="0x" + "22" * 20,
        index_price=2_600 * ETH_UNIT,
        collateral_price=USDC_UNIT,
        price_impact_usd=-40 * USD,
        position_fee_factor=7 * FLOAT // 10_000,  # 0.07%
        pro_discount_factor=FLOAT // 10,  # 10%
        referral_discount_factor=0,
        borrowing_fee_usd=12_345_678 * 10**24 + 999,
        funding_fee_amount=1_000_001,
        max_impact_factor_for_liquidations=FLOAT // 100,  # 1%
        min_collateral_factor=FLOAT // 200,  # 0.5%
        min_collateral_usd=1 * USD,
    )


def test_standin_fee_and_min_collateral_math_by_hand() -> None:
    sim = _short_sim()
    # pnl (short) = sizeInUsd - sizeInTokens * P.max = 50,000e30 - 20e18 * 2600e12 = -2,000e30
    assert sim.pnl() == -2_000 * USD
    # position fee = floor(applyFactor(50,000e30, 7e26) / 1e24) = 35e30 / 1e24 = 35,000,000 (35 USDC)
    # pro discount = applyFactor(35,000,000, 1e29) = 3,500,000; borrowing = floor((12,345,678e24 + 999) / 1e24)
    # total = 35,000,000 + 12,345,678 - 3,500,000 + 1,000,001 (funding, read) = 44,845,679 USDC units
    assert sim.fee_amounts() == {
        "position": 35_000_000,
        "borrowing": 12_345_678,
        "discount": 3_500_000,
        "total": 44_845_679,
    }
    # impact = -40e30 + (-1e16) * 2600e12 = -66e30, above the cap -applyFactor(50,000e30, 1e28) = -500e30
    assert sim.impact() == -66 * USD
    # remaining = 5,000e30 - 2,000e30 - 66e30 - 44,845,679 * 1e24 = 2,889.154321e30
    assert sim.remaining() == 2_889_154_321 * 10**24
    # minCollateralUsdForLeverage = applyFactor(50,000e30, 5e27) = 250e30 > MIN_COLLATERAL_USD 1e30
    assert sim.min_collateral_usd_for_leverage() == 250 * USD and sim.requirement() == 250 * USD
    # health = floor(2,889.154321 / 250 * 1e18)
    assert sim.health() == 11_556_617_284 * 10**9 and not sim.liquidatable()
    # Liquidation: remaining(p) = 55,000e30 - 40e30 - 44.845679e30 - (20e18 + 1e16) * p < 250e30
    #   <=> 20.01e18 * p > 54,665.154321e30, the least such p per wei:
    lp = 54_665_154_321 * 10**24 // (2_001 * 10**16) + 1
    assert sim.liquidation_index_price() == lp  # about 2,731.89 USD/ETH
    assert sim.with_index_price(lp).liquidatable() and not sim.with_index_price(lp - 1).liquidatable()
    # Negative impact is capped at 1% of size: -600e30 - 26e30 -> -500e30; positive impact counts as 0.
    assert replace(sim, price_impact_usd=-600 * USD).impact() == -500 * USD
    assert replace(sim, price_impact_usd=30 * USD).impact() == 0  # 30e30 - 26e30 >= 0
    # A referral discount of 20% beats the 10% pro discount: max(7,000,000, 3,500,000).
    assert replace(sim, referral_discount_factor=FLOAT // 5).fee_amounts()["discount"] == 7_000_000
    # A small position: MIN_COLLATERAL_USD (10e30) binds over 0.5% of 1,000e30 = 5e30.
    small = replace(
        sim,
        size_usd=1_000 * USD,
        size_tokens=4 * 10**17,
        collateral_amount=12 * USDC,
        price_impact_usd=0,
        pending_impact_amount=0,
        borrowing_fee_usd=0,
        funding_fee_amount=0,
        pro_discount_factor=0,
        min_collateral_usd=10 * USD,
    )
    # remaining = 12e30 + (1,000e30 - 0.4e18 * 2600e12 = -40e30) - 0.7e30 = -28.7e30 -> "min collateral" first
    assert small.remaining() == -28_700_000 * 10**24 and small.reason() == "min collateral"
    assert small.requirement() == 10 * USD and small.health() == 0


def test_standin_collateral_is_index_moves_both_prices() -> None:
    # A long of 10 ETH (30,000 USD) backed by 1.5 WETH: collateral value and fees move with the ETH price.
    weth = "0x" + "33" * 20
    sim = replace(
        _short_sim(),
        is_long=True,
        size_usd=30_000 * USD,
        size_tokens=10 * ETH,
        collateral_amount=3 * ETH // 2,
        index_token=weth,
        collateral_token=weth,
        index_price=3_000 * ETH_UNIT,
        collateral_price=3_000 * ETH_UNIT,
        pending_impact_amount=0,
        price_impact_usd=0,
        pro_discount_factor=0,
        borrowing_fee_usd=30 * USD,
        funding_fee_amount=0,
    )
    # fee tokens = floor(21e30 / 3000e12) + floor(30e30 / 3000e12) = 7e15 + 1e16 wei
    assert sim.fee_amounts()["total"] == 17 * 10**15
    # The fee tokens are floor(51e30 / p), so they cost (51e30 - less than p) at any price p:
    # remaining(p) = 1.5e18 * p + 10e18 * p - 30,000e30 - ~51e30 >= 150e30  <=>  p >= ~30,201e30 / 11.5e18
    lp = sim.liquidation_index_price()
    assert lp is not None
    closed = Fraction(30_201 * USD, 115 * 10**17)  # 2,626,173,913,043,478.26 per wei: about 2,626.17 USD/ETH
    assert lp == closed.__floor__()
    assert sim.with_index_price(lp).liquidatable() and not sim.with_index_price(lp + 1).liquidatable()


# --- against the stand-in's own check


def _stand_in_check(gmx: GmxStandIn, leg_details: dict[str, Any], account: str, block: int, prices: Any) -> Any:
    return gmx.reader.functions.isPositionLiquidatable(
        gmx.data_store.address,
        "0x" + "00" * 20,
        bytes.fromhex(leg_details["position_key"][2:]),
        _market_props(gmx, leg_details["market_token"]),
        prices,
        True,
        True,
    ).call(block_identifier=block)


def _market_props(gmx: GmxStandIn, market_token: str) -> tuple[str, str, str, str]:
    return tuple(gmx.data_store.functions.standInMarket(market_token).call())  # type: ignore[return-value]


def _market_name(gmx: GmxStandIn, market_token: str) -> str:
    return next(m.name for m in (gmx.market("ETH/USD"), gmx.market("BTC/USD")) if m.address == market_token)


def _setup_positions(gmx: GmxStandIn, users: list[str]) -> None:
    eth, btc = gmx.market("ETH/USD").address, gmx.market("BTC/USD").address
    usdc = gmx.token("USDC").address
    gmx.set_uints(
        {
            market_key("CUMULATIVE_BORROWING_FACTOR", eth, True): FLOAT // 1_000,  # 0.1% of size owed by longs
            # funding owed by USDC-backed ETH shorts: ceil(62,000e30 * (2e16 + 1) / 1e45) = 1,240,001 USDC units
            _funding_key(eth, usdc, False): 2 * 10**16 + 1,
            _pro_tier_key(users[2]): 1,
            _pro_discount_key(1): FLOAT // 10,
            # BTC/USD is a single-token (USDC) market: getOpenInterest reads this key for the long and the short
            # collateral slot, each divided by the pool divisor 2, so the side's open interest is the stored value.
            open_interest_key(btc, usdc, True): 1_000_000 * USD,
            open_interest_key(btc, usdc, False): 3_000_000 * USD,
            market_key("MIN_COLLATERAL_FACTOR_FOR_OPEN_INTEREST_MULTIPLIER", btc, True): 3 * 10**22,
        }
    )
    gmx.set_position(users[0], "ETH/USD", "USDC", True, 30_000 * USD, 10 * ETH, 3_000 * USDC)
    gmx.set_position(users[1], "ETH/USD", "WETH", True, 30_000 * USD, 10 * ETH, ETH)
    gmx.set_position(users[2], "ETH/USD", "USDC", False, 62_000 * USD, 20 * ETH, 5_000 * USDC, pending_impact=-(10**16))
    gmx.set_position(users[3], "BTC/USD", "USDC", True, 60_000 * USD, BTC, 2_500 * USDC)
    gmx.set_position(users[0], "BTC/USD", "USDC", False, 30_000 * USD, BTC // 2, 1_000 * USDC)


def _funding_key(market: str, collateral: str, is_long: bool) -> bytes:
    from watcher.adapters.gmx_v2 import _key

    return _key(
        ("name", "FUNDING_FEE_AMOUNT_PER_SIZE"), ("address", market), ("address", collateral), ("bool", is_long)
    )


def _pro_tier_key(account: str) -> bytes:
    from watcher.adapters.gmx_v2 import _key

    return _key(("name", "PRO_TRADER_TIER"), ("address", account))


def _pro_discount_key(tier: int) -> bytes:
    from watcher.adapters.gmx_v2 import _key

    return _key(("name", "PRO_DISCOUNT_FACTOR"), ("uint256", tier))


def _compare(gmx: GmxStandIn, watcher: StandInWatcher) -> list[bool]:
    """Every leg's verdict, equity and requirement equal the stand-in's isPositionLiquidatable at the same block."""
    verdicts = []
    for p in watcher.check().positions:
        for leg in p.perps:
            name = _market_name(gmx, leg.details["market_token"])
            liq, reason, info = _stand_in_check(
                gmx, leg.details, p.account, p.block.number, gmx.prices_for(name, p.block.number)
            )
            assert (leg.details["reason"], leg.equity) == (reason, info[0]), (p.account, leg.details)
            assert leg.requirement == max(info[1], info[2])
            h = leg.equity * WAD // leg.requirement if leg.equity > 0 else 0
            assert liq == (h < WAD)
            verdicts.append(liq)
        assert p.liquidatable == any(leg.details["reason"] != "" for leg in p.perps)
        assert p.liquidatable == (p.health is not None and p.health < WAD)
    return verdicts


def test_standin_verdicts_equal_its_check_across_prices(chain: Web3) -> None:
    gmx = deploy_gmx_stand_in(chain)
    users = new_addresses(4, "gmx")
    _setup_positions(gmx, users)
    watcher = StandInWatcher(gmx, users)
    seen = [_compare(gmx, watcher)]
    for eth, btc in (
        (2_800, 58_000),
        (2_750, 57_800),
        (2_700, 58_500),
        (3_300, 62_000),
        (3_500, 63_500),
        (2_000, 40_000),
    ):
        gmx.set_answer("WETH", eth * 10**8)
        gmx.set_answer("BTC", btc * 10**8)
        seen.append(_compare(gmx, watcher))
    print(f"{chain.provider.__class__.__name__} stand-in verdicts per step: {seen}")
    flat = [v for step in seen for v in step]
    assert any(flat) and not all(flat) and not any(seen[0])
    # Hand-worked pending fees the Reader reports, as the watcher shows them.
    legs = {(p.account, leg.market): leg for p in watcher.check().positions for leg in p.perps}
    assert legs[(users[2], "WETH/USD [WETH-USDC]")].details["pending_funding_fee_amount"] == 1_240_001
    assert legs[(users[1], "WETH/USD [WETH-USDC]")].details["pending_borrowing_fee_usd"] == 30 * USD


def _liq_at(gmx: GmxStandIn, details: dict[str, Any], block: int, index_price: int, collateral_is_index: bool) -> bool:
    name = _market_name(gmx, details["market_token"])
    prices = [list(x) for x in gmx.prices_for(name, block)]
    prices[0] = [index_price, index_price]
    if collateral_is_index:
        prices[1] = [index_price, index_price]  # long token == index token (WETH) in ETH/USD
    return bool(_stand_in_check(gmx, details, "", block, tuple(tuple(x) for x in prices))[0])


def test_standin_liquidation_price_is_the_boundary(chain: Web3) -> None:
    gmx = deploy_gmx_stand_in(chain)
    users = new_addresses(4, "gmx-lp")
    _setup_positions(gmx, users)
    watcher = StandInWatcher(gmx, users)
    checked = 0
    for p in watcher.check().positions:
        for leg in p.perps:
            assert leg.liquidation_price is not None and leg.details["reason"] == ""
            unit = 10**leg.size_decimals
            # whole USD per whole token back to GMX's USD*1e30 per token base unit: an exact integer
            raw = leg.liquidation_price * 10**30 / unit
            assert raw.denominator == 1
            lp = int(raw)  # the GMX price per base unit
            both = leg.details["collateral_token"] == gmx.token("WETH").address
            assert _liq_at(gmx, leg.details, p.block.number, lp, both)
            safe = lp + 1 if leg.size > 0 else lp - 1  # one price unit on the safe side
            assert not _liq_at(gmx, leg.details, p.block.number, safe, both)
            if leg.size > 0:
                assert leg.liquidation_price < leg.mark_price
            else:
                assert leg.liquidation_price > leg.mark_price
            checked += 1
    assert checked == 5  # longs (USDC and WETH collateral, ETH and BTC) and shorts


def test_standin_open_interest_factor_binds_opening_not_liquidation(chain: Web3) -> None:
    gmx = deploy_gmx_stand_in(chain)
    users = new_addresses(4, "gmx-oi")
    _setup_positions(gmx, users)
    watcher = StandInWatcher(gmx, users)
    [p] = [p for p in watcher.check().positions if p.account == users[3]]
    [leg] = p.perps
    # Long open interest = 1,000,000e30 / 2 + 1,000,000e30 / 2 (single-token pool); * 3e22 / 1e30 = 3e28 (3%),
    # above MIN_COLLATERAL_FACTOR (1%) and MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION (0.5%).
    assert leg.details["min_collateral_factor_for_open_interest"] == 3 * 10**28
    assert leg.details["open_requirement_usd"] == 1_800 * USD  # 3% of 60,000e30: what an increase must keep
    assert leg.requirement == 300 * USD  # the liquidation check: 0.5% of 60,000e30
    # Price falls until equity is between the two: still not liquidatable, as in the stand-in (and GMX) check.
    gmx.set_answer("BTC", 58_000 * 10**8)
    _compare(gmx, watcher)
    [p] = [p for p in watcher.check().positions if p.account == users[3]]
    [leg] = p.perps
    assert leg.requirement < leg.equity < leg.details["open_requirement_usd"] and not p.liquidatable
    # perp_top_ups restores a 1.5 target on this isolated position: 1.5 * 300e30 - equity, in USD*1e30,
    # and that many USDC (rounded up to a unit) supplied to the replay reaches the target.
    [up] = [u for u in perp_top_ups(p, 3 * WAD // 2) if u.scope == leg.market]
    assert up.amount == 450 * USD - leg.equity and up.health_after == 3 * WAD // 2
    usdc = gmx.token("USDC").address
    assert p.simulator is not None
    assert p.simulator.with_supply(usdc, -(-up.amount // USDC_UNIT)).health() >= 3 * WAD // 2


def test_standin_keys_match_the_solidity_keys(chain: Web3) -> None:
    gmx = deploy_gmx_stand_in(chain)
    [u] = new_addresses(1, "gmx-keys")
    gmx.set_position(u, "ETH/USD", "USDC", True, 30_000 * USD, 10 * ETH, 3_000 * USDC)
    eth = gmx.market("ETH/USD").address
    block = gmx.set_uints({market_key("MIN_COLLATERAL_FACTOR_FOR_LIQUIDATION", eth): 123 * FLOAT // 10_000})
    _, _, info = gmx.is_liquidatable(u, "ETH/USD", "USDC", True, block)
    assert info[2] == 30_000 * USD * 123 // 10_000  # the key written from Python is the one Solidity reads
    assert position_key(u, eth, gmx.token("USDC").address, True).hex() in {
        k.hex() for k in gmx.data_store.functions.standInAccountPositionKeys(u).call()
    }


def test_standin_one_eth_call_per_check(chain: Web3) -> None:
    gmx = deploy_gmx_stand_in(chain)
    users = new_addresses(4, "gmx-batch")
    _setup_positions(gmx, users)
    watcher = StandInWatcher(gmx, users)
    first = watcher.check()
    assert first.stats["local"].rounds <= 5 and len(first.positions) == 4
    steady = watcher.check().stats["local"]
    assert (steady.eth_calls, steady.rounds) == (1, 1), steady
    for step in range(3):
        gmx.set_answer("WETH", (2_900 - 50 * step) * 10**8)
        moved = watcher.check()
        stats = moved.stats["local"]
        # The position infos priced by the previous check are asked again at this block's prices, with the feed
        # answers that confirm them, and nothing else: the aggregate's timestamp, 3 feeds (WETH, USDC, BTC) and the
        # infos of the 3 accounts with a WETH market (users[3] trades BTC/USD [USDC-USDC] only).
        assert (stats.eth_calls, stats.rounds) == (2, 2), stats
        assert stats.chunk_sizes == [steady.chunk_sizes[0], 1 + 3 + 3], stats
        assert len(moved.positions) == 4
        again = watcher.check()
        assert (again.stats["local"].eth_calls, again.stats["local"].rounds) == (1, 1)
    print(f"first check {first.stats['local']}, steady {steady}, after a move {moved.stats['local']}")


def test_standin_bad_answers_are_read_errors(chain: Web3) -> None:
    gmx = deploy_gmx_stand_in(chain)
    users = new_addresses(4, "gmx-bad")
    _setup_positions(gmx, users)
    watcher = StandInWatcher(gmx, users)
    watcher.check()
    # A reverting feed: the accounts using that token are unknown, never healthy.
    gmx.set_feed_broken("BTC", True)
    result = watcher.check(readable=False)
    unknown = {a.address for u in result.unreadable for a in u.accounts}
    assert unknown == {users[0], users[3]}
    assert {p.account for p in result.positions} == {users[1], users[2]}
    gmx.set_feed_broken("BTC", False)
    watcher.check()
    # A Reader that reverts (the wrong address configured): everything is unreadable.
    wrong = StandInWatcher(gmx, users)
    wrong.reader.reader = gmx.feeds["WETH"].address
    result = wrong.check(readable=False)
    assert not result.positions and result.unreadable
    # Malformed data (garbage where the Reader's answer belongs) is a ReadError, not a crash.
    r = watcher.reader
    calls = r.calls()
    junk = [(True, b"\x01" * 7) for _ in calls]
    with pytest.raises(ReadError):
        r.parse(junk, BlockRef(1, 1))
    bad_info = [
        (ok, b"\xff" * 64) if tag[0] == "info" else (True, b"\0" * 32)
        for tag, (ok, _) in zip(r._plan, [(True, b"")] * len(calls), strict=True)
    ]
    with pytest.raises(ReadError):
        r.parse(bad_info, BlockRef(1, 1))


def test_make_reader_from_a_deployment() -> None:
    from watcher.config import Deployment

    dep = Deployment(
        name="gmx_v2",
        adapter="gmx_v2",
        chain="arbitrum",
        chain_id=42161,
        address="0x470fbC46bcC0f16532691Df360A07d8Bf5ee0789",
        extra={
            "data_store": "0xFD70de6b91282D8017aA4E741e9Ae325CAb992d8",
            "referral_storage": "0xe6fab3f0c7199b0d34d7fbe83394fc0e0d06e99d",
        },
    )
    r = make_reader(dep, [Account("0x" + "ab" * 20, "a")])
    assert r.data_store == "0xFD70de6b91282D8017aA4E741e9Ae325CAb992d8"
    assert len(r.calls()) == 2  # the account's positions and MIN_COLLATERAL_USD, before anything is learned
    with pytest.raises(ValueError):
        make_reader(dep.model_copy(update={"extra": {}}), [])


def test_standin_account_without_positions_reads(chain: Web3) -> None:
    # Review fix: with no position there are no tokens, hence no prices; the reader used to wait for prices forever
    # and the check gave up after MAX_ROUNDS ("state kept changing"), marking the account unknown on every check.
    gmx = deploy_gmx_stand_in(chain)
    [u] = new_addresses(1, "gmx-empty")
    watcher = StandInWatcher(gmx, [u])
    [p] = watcher.check().positions
    assert p.perps == () and p.health is None and not p.liquidatable
    again = watcher.check()
    assert again.stats["local"].eth_calls == 1 and again.stats["local"].rounds == 1
    # The account opens a position later: it is learned, then valued as usual.
    gmx.set_position(u, "ETH/USD", "USDC", True, 30_000 * USD, 10 * ETH, 3_000 * USDC)
    [p] = watcher.check().positions
    assert len(p.perps) == 1 and not p.liquidatable and p.health is not None and p.health > WAD


def test_standin_feed_down_from_the_first_check_is_skipped(chain: Web3) -> None:
    # Review fix: when every token the accounts need has a broken feed at the first check, no price is ever known;
    # the account must be skipped with the feed's reason, not given up on as "state kept changing".
    gmx = deploy_gmx_stand_in(chain)
    [u] = new_addresses(1, "gmx-feed-down")
    gmx.set_position(u, "BTC/USD", "USDC", True, 60_000 * USD, BTC, 2_500 * USDC)
    gmx.set_feed_broken("BTC", True)
    gmx.set_feed_broken("USDC", True)
    result = StandInWatcher(gmx, [u]).check(readable=False)
    assert not result.positions
    [unknown] = result.unreadable
    assert unknown.accounts[0].address == u and "latestRoundData reverted" in unknown.reason, unknown.reason


def test_standin_stale_feed_is_skipped(chain: Web3) -> None:
    # Review fix: GMX's getPriceFeedPrice reverts when the feed was last updated more than
    # PRICE_FEED_HEARTBEAT_DURATION(token) seconds ago; the watcher used the stale price as if it were current.
    gmx = deploy_gmx_stand_in(chain)
    users = new_addresses(4, "gmx-stale")
    _setup_positions(gmx, users)
    watcher = StandInWatcher(gmx, users)
    assert len(watcher.check().positions) == 4
    weth = gmx.token("WETH").address
    updated = int(gmx.feeds["WETH"].functions.latestRoundData().call()[3])
    block = gmx.set_uints({token_key("PRICE_FEED_HEARTBEAT_DURATION", weth): 600})
    # Within the heartbeat: still read (GMX: stale only when now - updatedAt > heartbeat).
    assert gmx.w3.eth.get_block(block)["timestamp"] - updated <= 600 and len(watcher.check().positions) == 4
    next_block_at(gmx.w3, max(latest_timestamp(gmx.w3), updated) + 700)
    gmx.set_uints({key_min_collateral_usd(): 1 * FLOAT})  # mine a block 700 s on, same value
    result = watcher.check(readable=False)
    assert {p.account for p in result.positions} == {users[3]}  # BTC/USD [USDC-USDC] needs no WETH price
    assert {a.address for u in result.unreadable for a in u.accounts} == {users[0], users[1], users[2]}
    assert all("heartbeat 600s" in u.reason for u in result.unreadable), result.unreadable
    gmx.set_answer("WETH", 3_000 * 10**8)  # a fresh round: read again
    assert len(watcher.check().positions) == 4


BTC_UNIT = 10**22  #: GMX price of BTC per satoshi for 1 USD/BTC: 1e30 / 1e8


def test_standin_pool_pnl_cap_liquidates_a_profitable_position(chain: Web3) -> None:
    # A long of 1 BTC opened at 60,000 USD with 200 USDC (300x), in BTC/USD [USDC-USDC] whose longs hold 10 BTC bought
    # for 500,000 USD in all and whose pool pays them at most 10% of 100,000 USDC. At 61,000 USD/BTC it is 1,000 USD up,
    # yet GMX (the stand-in) liquidates it, because PositionUtils.getPositionPnlUsd caps the pool's positive pnl:
    #   total pnl      = 1e8 * 61,000e22 - 60,000e30                           = 1,000e30
    #   pool pnl       = OI_IN_TOKENS 10e8 * 61,000e22 - OPEN_INTEREST 500,000e30 = 110,000e30   (getPnl, maximize)
    #   pool USD       = POOL_AMOUNT 200,000e6 / divisor 2 * 1e24 (USDC P.min)  = 100,000e30
    #   capped pool    = min(110,000e30, applyFactor(100,000e30, 1e29))         = 10,000e30       (getCappedPnl)
    #   position pnl   = floor(1,000e30 * 10,000e30 / 110,000e30)              = 90.909090...e30 (floor)
    #   close fee      = applyFactor(60,000e30, 0.05%) / 1e24 = 30,000,000 USDC units (closing longs improves balance;
    #                    the positive impact counts as 0 in the check), no borrowing or funding
    #   remaining      = 200e30 + 90.909090...e30 - 30e30                      = 260.909090...e30
    #                    < applyFactor(60,000e30, 0.5%) = 300e30: "min collateral for leverage"
    #   uncapped it would be 200e30 + 1,000e30 - 30e30 = 1,170e30: healthy.
    # Liquidation price p (per satoshi): 170e30 + floor(1e34 * (1e8 p - 6e34) / (1e9 p - 5e35)) < 300e30
    #   <=> 1e42 p - 6e68 < 1.3e41 p - 6.5e67 <=> p < 5.35e68 / 8.7e41 = 614,942,528,735,632,183,908,045,977.01...
    #   (about 61,494.25 USD/BTC; the pool pnl there, 114,942e30, still exceeds the 10,000e30 cap, so the cap binds).
    gmx = deploy_gmx_stand_in(chain)
    [u] = new_addresses(1, "gmx-pnl-cap")
    btc, usdc = gmx.market("BTC/USD").address, gmx.token("USDC").address
    gmx.set_uints(
        {
            open_interest_key(btc, usdc, True): 500_000 * USD,  # single-token pool: /2 per collateral slot, twice
            open_interest_in_tokens_key(btc, usdc, True): 10 * BTC,
            pool_amount_key(btc, usdc): 200_000 * USDC,  # getPoolAmount halves it: 100,000 USDC
            max_pnl_factor_key("MAX_PNL_FACTOR_FOR_TRADERS", btc, True): FLOAT // 10,
        }
    )
    gmx.set_position(u, "BTC/USD", "USDC", True, 60_000 * USD, BTC, 200 * USDC)
    gmx.set_answer("BTC", 61_000 * 10**8)
    watcher = StandInWatcher(gmx, [u])
    assert _compare(gmx, watcher) == [True]  # the watcher's verdict and equity equal the stand-in's check
    result = watcher.check()
    assert result.stats["local"].eth_calls == 1  # the pool values come in the same batch
    [p] = result.positions
    [leg] = p.perps
    capped = 1_000 * USD * (10_000 * USD) // (110_000 * USD)
    assert capped == 90_909_090_909_090_909_090_909_090_909_090
    assert leg.details["uncapped_pnl_usd"] == 1_000 * USD and leg.details["pnl_usd"] == capped
    assert leg.details["pool_pnl_usd"] == 110_000 * USD and leg.details["max_pool_pnl_usd"] == 10_000 * USD
    assert leg.details["pnl_capped_by_pool"] and leg.details["reason"] == "min collateral for leverage"
    assert leg.equity == 170 * USD + capped and leg.requirement == 300 * USD and p.liquidatable
    assert p.health == (170 * USD + capped) * WAD // (300 * USD)
    # The stand-in's Reader reports the same capped and uncapped pnl (at the prices the watcher passed).
    [info] = gmx.reader.functions.getAccountPositionInfoList(
        gmx.data_store.address, "0x" + "00" * 20, u, [btc], [gmx.prices_for("BTC/USD")], "0x" + "00" * 20, 0, 10
    ).call()
    assert (info[4], info[5]) == (capped, 1_000 * USD)
    # The boundary: liquidatable at the predicted price, not one price unit (per satoshi) above it.
    lp = 53_500_000 * USD // (870 * BTC)
    assert lp == 614_942_528_735_632_183_908_045_977
    assert leg.liquidation_price == Fraction(lp * BTC, FLOAT)
    assert _liq_at(gmx, leg.details, p.block.number, lp, False)
    assert not _liq_at(gmx, leg.details, p.block.number, lp + 1, False)
    assert p.simulator is not None
    assert p.simulator.with_price(gmx.token("BTC").address, lp).liquidatable()
    assert not p.simulator.with_price(gmx.token("BTC").address, lp + 1).liquidatable()
    # Only the cap liquidates it: at 200% the cap (200,000e30) exceeds the pool pnl (110,000e30) and no longer binds;
    # the stand-in and the watcher then both count the full 1,000e30 pnl: healthy.
    gmx.set_uints({max_pnl_factor_key("MAX_PNL_FACTOR_FOR_TRADERS", btc, True): 2 * FLOAT})
    assert _compare(gmx, watcher) == [False]
    [p] = watcher.check().positions
    assert p.perps[0].equity == 1_170 * USD and not p.perps[0].details["pnl_capped_by_pool"]
