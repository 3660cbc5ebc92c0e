"""The Compound v3 adapter against our CometStandIn (not Compound's Comet): verdicts equal its isLiquidatable,
the accrual projection equals its absorb (accrue, then NotLiquidatable or not), symbols come from stand-in tokens."""

from __future__ import annotations

import pytest
from eth_abi import encode
from web3 import Web3

from tests.aave_helpers import local_client
from watcher.abi import decode_symbol
from watcher.adapters.base import Account
from watcher.adapters.compound_v3 import (
    CometAsset,
    CometRates,
    CometSimulator,
    CompoundV3Reader,
    accrued_indices,
    make_reader,
    utilization,
)
from watcher.check import CheckResult, run_check
from watcher.config import parse_config, resolve_deployments
from watcher.devchain.comet import (
    BASE,
    COLLATERALS,
    USDC_RATES_PER_YEAR,
    CometStandInMarket,
    StandInAsset,
    deploy_comet_stand_in,
    new_addresses,
    per_second,
)
from watcher.devchain.deploy import is_eth_tester, mine, revert_snapshot, send_txs, take_snapshot
from watcher.devchain.node import DevchainError
from watcher.model import WAD, Position
from watcher.risk import liquidation_price

USDC, WETH, WBTC = 10**6, 10**18, 10**8
E15 = 10**15


class CometStandInWatcher:
    """The watcher's real read path (ChainClient + run_check) over one or more stand-in markets."""

    def __init__(self, market: CometStandInMarket, users: list[str], *more: CometStandInMarket) -> None:
        w3 = market.w3
        self.client = local_client(w3)
        accounts = [Account(u, u[:8]) for u in users]
        # No symbols given: the reader asks the stand-in tokens' symbol().
        self.readers = [CompoundV3Reader("compound_v3", "local", m.comet.address, accounts) for m in (market, *more)]
        self.reader = self.readers[0]

    def check(self) -> CheckResult:
        """One check, as `watcher check` runs it."""
        result = run_check({"local": self.client}, list(self.readers))
        assert not result.unreadable, result.unreadable
        return result


def _assert_verdicts(market: CometStandInMarket, watcher: CometStandInWatcher) -> list[bool]:
    """The watcher's verdict and health for each position agree with the stand-in's isLiquidatable at that block."""
    verdicts = []
    for p in watcher.check().positions:
        contract = market.is_liquidatable(p.account, p.block.number)
        assert p.liquidatable == contract, (p.account, p.health, p.details, contract)
        assert p.liquidatable == (p.health is not None and p.health < WAD)
        verdicts.append(contract)
    return verdicts


def test_standin_verdicts_equal_is_liquidatable(chain: Web3) -> None:
    market = deploy_comet_stand_in(chain)
    users = new_addresses(6)
    # At 2000 USD/WETH and LCF 0.83, 1 WETH carries 1660 USD of debt; at 60000 USD/WBTC and LCF 0.75, 1 WBTC 45000.
    positions = [
        (1_000 * USDC, {"WETH": WETH}),
        (1_659 * USDC, {"WETH": WETH}),
        (1_660 * USDC, {"WETH": WETH}),
        (1_660 * USDC + 1, {"WETH": WETH}),
        (25_000 * USDC, {"WETH": 2 * WETH, "WBTC": WBTC // 2}),  # weighted 3320 + 22500
        (0, {"WBTC": WBTC}),
    ]
    for user, (borrow, coll) in zip(users, positions, strict=True):
        market.set_position(user, borrow, coll)
    watcher = CometStandInWatcher(market, users)
    seen = [_assert_verdicts(market, watcher)]
    assert seen[0] == [False, False, False, True, False, False]
    # The initial side (isBorrowCollateralized, borrowCollateralFactor 0.80): 1 WETH at 2000 carries 1600 USD, so the
    # 1659 and 1660 USDC borrowers may borrow no more, yet are not liquidatable (LCF 0.83 carries 1660); the mixed
    # one carries 2*2000*0.80 + 0.5*60000*0.70 = 3200 + 21000 = 24200 < 25000 on the initial side.
    by_user = {p.account: p for p in watcher.check().positions}
    assert [by_user[u].details["borrow_collateralized"] for u in users] == [True, False, False, False, False, True]
    assert by_user[users[0]].details["borrow_weighted_collateral"] == 1_600 * 10**8  # USD, 8 decimals
    # The stored index grows (as if interest accrued), then prices fall: verdicts follow the stand-in throughout.
    market.set_base_borrow_index(10**15 + 10**12)
    seen.append(_assert_verdicts(market, watcher))
    for weth, wbtc in ((1_900, 58_000), (1_500, 50_000), (900, 20_000)):
        market.set_price("WETH", weth * 10**8)
        market.set_price("WBTC", wbtc * 10**8)
        seen.append(_assert_verdicts(market, watcher))
    # The base price rising makes the debt heavier, as a depeg would.
    market.set_price("USDC", 2 * 10**8)
    seen.append(_assert_verdicts(market, watcher))
    print(f"{chain.provider.__class__.__name__} stand-in verdicts per step: {seen}")
    assert seen[-2] == [True, True, True, True, True, False]


def _liquidatable_at_price(market: CometStandInMarket, user: str, symbol: str, price: int) -> bool:
    """Set `symbol`'s price; whether the stand-in's isLiquidatable says so there. State rolled back."""
    snap = take_snapshot(market.w3)
    try:
        block = market.set_price(symbol, price)
        return market.is_liquidatable(user, block)
    finally:
        revert_snapshot(market.w3, snap)


def test_standin_liquidation_price_is_the_boundary(chain: Web3) -> None:
    market = deploy_comet_stand_in(chain)
    [eth_user, two_user] = new_addresses(2, "boundary")
    market.set_position(eth_user, 1_500 * USDC, {"WETH": 3 * WETH // 2})
    market.set_position(two_user, 20_000 * USDC, {"WETH": WETH, "WBTC": WBTC // 2})
    market.set_base_borrow_index(1_003_456_789_012_345)  # a non-round stored index exercises the floors
    watcher = CometStandInWatcher(market, [eth_user, two_user])
    for p in watcher.check().positions:
        assert p.health is not None and p.health > WAD and not p.liquidatable
        sim = p.simulator
        assert isinstance(sim, CometSimulator)
        for leg in p.collateral:
            lp = liquidation_price(sim, leg)
            symbol = leg.symbol
            if lp is None:
                # The other collateral alone covers the debt (WBTC here): no WETH price liquidates, even the least.
                assert not sim.with_price(leg.asset, 0).liquidatable()
                assert not _liquidatable_at_price(market, p.account, symbol, 1)
                continue
            assert lp.falling and lp.current == market.price(symbol)
            assert _liquidatable_at_price(market, p.account, symbol, lp.price)
            assert not _liquidatable_at_price(market, p.account, symbol, lp.price + 1)
        [debt] = p.debt
        up = liquidation_price(sim, debt)
        assert up is not None and not up.falling
        assert _liquidatable_at_price(market, p.account, "USDC", up.price)
        assert not _liquidatable_at_price(market, p.account, "USDC", up.price - 1)


def test_standin_one_eth_call_per_check(chain: Web3) -> None:
    market = deploy_comet_stand_in(chain)
    users = new_addresses(3, "batch")
    market.set_position(users[0], 1_000 * USDC, {"WETH": WETH})
    market.set_position(users[1], 20_000 * USDC, {"WBTC": WBTC})
    watcher = CometStandInWatcher(market, users)
    first = watcher.check()
    # Learning numAssets, then the asset infos, takes up to two more rounds once.
    assert first.stats["local"].rounds <= 3 and len(first.positions) == 3
    for _ in range(3):
        market.set_price("WETH", market.price("WETH") - 10**8)
        again = watcher.check()
        stats = again.stats["local"]
        assert stats.eth_calls == 1 and stats.rounds == 1, stats
        assert len(again.positions) == 3


def test_standin_health_by_hand() -> None:
    # 1 WETH at $2000 (8 decimals), LCF 0.83, principal -1600e6 at the initial index 1e15, USDC at $1:
    #   debt = 1600e6 * 1e15 / 1e15 = 1600e6; debtValue = 1600e6 * 1e8 / 1e6 = 1600e8
    #   value = 1e18 * 2000e8 / 1e18 = 2000e8; weighted = 2000e8 * 0.83e18 / 1e18 = 1660e8
    #   liquidity = 1660e8 - 1600e8 = 60e8 >= 0 -> not liquidatable; health = 1660e8 * 1e18 / 1600e8 = 1.0375e18
    weth = CometAsset(0, "0x" + "11" * 20, "0x" + "22" * 20, 10**18, 80 * 10**16, 83 * 10**16, 90 * 10**16)
    sim = CometSimulator(
        base_token="0x" + "33" * 20,
        base_scale=10**6,
        base_price=10**8,
        base_supply_index=10**15,
        base_borrow_index=10**15,
        assets=(weth,),
        prices=(2000 * 10**8,),
        principal=-1600 * USDC,
        balances=(WETH,),
        assets_in=1,
        now=0,
    )
    assert sim.debt_value() == 1600 * 10**8 and sim.weighted() == 1660 * 10**8
    assert sim.health() == 10375 * 10**14 and not sim.liquidatable()
    # Boundary by hand: weighted(P) = floor(P * 83 / 100) >= 1600e8 iff P >= 1927.71084338e8 (rounded up).
    boundary = (1600 * 10**8 * 100 + 82) // 83
    assert not sim.with_price(weth.asset, boundary).liquidatable()
    assert sim.with_price(weth.asset, boundary - 1).liquidatable()
    # Outside assetsIn the balance does not count, as in Comet.
    assert replace_assets_in(sim, 0).liquidatable()
    # Repaying 60 USDC leaves 1540e6; supplying 1 more WETH doubles the weighted collateral.
    assert sim.with_repay(sim.base_token, 60 * USDC).debt() == 1540 * USDC
    assert sim.with_supply(weth.asset, WETH).weighted() == 3320 * 10**8


def replace_assets_in(sim: CometSimulator, assets_in: int) -> CometSimulator:
    """The same simulator with a different assetsIn bitmap."""
    from dataclasses import replace

    return replace(sim, assets_in=assets_in)


# --- accrual projection (absorb) -------------------------------------------------------------------------------

# cUSDCv3's rates per second (Comet's constructor floors per-year / 31_536_000):
#   borrow: kink 0.8e18, slopeLow 0.035e18/31536000 = 1109842719, slopeHigh 0.25e18/31536000 = 7927447995,
#           base 0.015e18/31536000 = 475646879; supply: kink 0.8e18, slopeLow 0.0325e18/31536000 = 1030568239,
#           slopeHigh 0.4e18/31536000 = 12683916793, base 0.
RATES = CometRates(*per_second(USDC_RATES_PER_YEAR))


def test_standin_projection_by_hand() -> None:
    expected = CometRates(80 * 10**16, 1030568239, 12683916793, 0, 80 * 10**16, 1109842719, 7927447995, 475646879)
    assert expected == RATES
    # Stored: baseSupplyIndex 1.05e15, baseBorrowIndex 1.1e15, totalSupplyBase 1e12, totalBorrowBase 8e11.
    #   presentValueSupply = 1e12 * 1.05e15 / 1e15 = 1.05e12; presentValueBorrow = 8e11 * 1.1e15 / 1e15 = 8.8e11
    #   utilization = floor(8.8e11 * 1e18 / 1.05e12) = floor(0.838095238095238095238...e18) = 838095238095238095
    u = utilization(105 * 10**13, 11 * 10**14, 10**12, 8 * 10**11)
    assert u == 838095238095238095
    # Above the kink: borrowRate = 475646879 + floor(1109842719 * 0.8e18 / 1e18) [= 887874175]
    #   + floor(7927447995 * 38095238095238095 / 1e18) [= floor(301998018.87) = 301998018] = 1665519072 per second;
    # supplyRate = 0 + floor(1030568239 * 0.8) [= 824454591] + floor(12683916793 * 0.0380952...) [= 483196830].
    assert RATES.borrow_rate(u) == 1665519072 and RATES.supply_rate(u) == 1307651421
    # Below the kink only slopeLow applies: at u = 0.5e18, 475646879 + floor(1109842719 / 2) = 475646879 + 554921359.
    assert RATES.borrow_rate(5 * 10**17) == 1030568238
    # After 3600 s: borrowIndex += floor(1.1e15 * (1665519072 * 3600) / 1e18) = floor(6595455525.12) = 6595455525;
    # supplyIndex += floor(1.05e15 * (1307651421 * 3600) / 1e18) = floor(4942922371.38) = 4942922371.
    assert accrued_indices(RATES, 105 * 10**13, 11 * 10**14, 10**12, 8 * 10**11, 3600) == (
        1050004942922371,
        1100006595455525,
    )
    # The simulator accrues in one step from lastAccrualTime, as accrueInternal does with no transaction in between;
    # an earlier time changes nothing (indexes never go back).
    sim = CometSimulator(
        base_token="0x" + "33" * 20,
        base_scale=USDC,
        base_price=10**8,
        base_supply_index=105 * 10**13,
        base_borrow_index=11 * 10**14,
        assets=(),
        prices=(),
        principal=-1_000_000 * USDC,
        balances=(),
        assets_in=0,
        now=1_000,
        rates=RATES,
        total_supply_base=10**12,
        total_borrow_base=8 * 10**11,
        last_accrual=1_000,
    )
    later = sim.at_time(4_600)
    assert later.base_borrow_index == 1100006595455525 and later.last_accrual == 4_600
    # debt = floor(1e12 * 1100006595455525 / 1e15) = 1100006595455 (1,100,006.595455 USDC)
    assert later.debt() == 1100006595455
    assert sim.at_time(500) == CometSimulator(**{**_fields(sim), "now": 500})
    # Repaying moves totalBorrowBase by the principal repaid (repayAndSupplyAmount), so utilization follows.
    assert sim.with_repay(sim.base_token, 500_000 * USDC).total_borrow_base == 8 * 10**11 - 454545454545


def _fields(sim: CometSimulator) -> dict[str, object]:
    return {f: getattr(sim, f) for f in CometSimulator.__dataclass_fields__}


def _mine_at(w3: Web3, timestamp: int) -> int:
    """Mine an empty block stamped `timestamp`; returns its number."""
    _next_block_at(w3, timestamp)
    mine(w3)
    block = w3.eth.get_block("latest")
    assert block["timestamp"] == timestamp, (block["timestamp"], timestamp)
    return int(block["number"])


def _next_block_at(w3: Web3, timestamp: int) -> None:
    if is_eth_tester(w3):
        # eth-tester's pending block is stamped latest + 1; time_travel(t) mines one at t - 1 and leaves it at t.
        if w3.eth.get_block("pending")["timestamp"] != timestamp:
            w3.provider.ethereum_tester.time_travel(timestamp)  # type: ignore[attr-defined]
    else:
        w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])  # type: ignore[arg-type]


def _absorb_at(market: CometStandInMarket, user: str, timestamp: int) -> str:
    """Send absorb(admin, [user]) in a block stamped `timestamp`; '' if it succeeded, else the revert reason."""
    _next_block_at(market.w3, timestamp)
    try:
        [r] = send_txs(market.w3, [market.absorb_tx([user])], errors_abi=market.abi)
    except DevchainError as exc:
        return str(exc)
    assert market.w3.eth.get_block(r["blockNumber"])["timestamp"] == timestamp
    return ""


def _first_absorbable(sim: CometSimulator, lo: int, hi: int) -> int:
    """The least timestamp in (lo, hi] at which the accrued position is liquidatable (bisection)."""
    assert not sim.at_time(lo).liquidatable() and sim.at_time(hi).liquidatable()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if sim.at_time(mid).liquidatable() else (mid, hi)
    return hi


def _only(result: CheckResult, account: str) -> Position:
    [p] = [p for p in result.positions if p.account == account]
    return p


def test_standin_absorb_boundary_follows_accrual(chain: Web3) -> None:
    market = deploy_comet_stand_in(chain)
    [user] = new_addresses(1, "absorb")
    market.set_totals(105 * 10**13, 11 * 10**14, 10**12, 8 * 10**11)  # utilization 0.838: 1665519072 per second
    # 1 WETH carries 1660 USD at LCF 0.83; a debt of 1659.999 USDC is 0.001 USD short of liquidatable, which the
    # borrow rate (~5.25% a year) adds in about six minutes.
    market.set_position(user, 1_659_999 * USDC // 1_000, {"WETH": WETH})
    watcher = CometStandInWatcher(market, [user])
    p = _only(watcher.check(), user)
    sim = p.simulator
    assert isinstance(sim, CometSimulator) and not p.liquidatable and not p.details["absorbable_now"]
    start = p.block.timestamp
    t_star = _first_absorbable(sim, sim.last_accrual, sim.last_accrual + 3600)
    assert t_star - start >= 3, (start, t_star)  # room for eth-tester's time travel

    # At a block stamped one second early: isLiquidatable false, absorbable_now false, and absorb there reverts.
    snap = take_snapshot(chain)
    try:
        block = _mine_at(chain, t_star - 1)
        p = _only(watcher.check(), user)
        assert p.block.number == block and not p.liquidatable and not market.is_liquidatable(user, block)
        assert not p.details["absorbable_now"] and p.details["absorb_health"] >= WAD
        # The stand-in's borrowBalanceOf accrues (as Comet's does): the watcher's projected debt, to the unit.
        assert (
            market.comet.functions.borrowBalanceOf(user).call(block_identifier=block) == sim.at_time(t_star - 1).debt()
        )
        assert p.details["accrued_borrow_index"] == sim.at_time(t_star - 1).base_borrow_index
        # ... and absorb one second later, at t*, accrues across the boundary and succeeds.
        assert _absorb_at(market, user, t_star) == ""
        assert market.comet.functions.userBasic(user).call()[0] == 0
        # absorb's accrueInternal stored the indexes the watcher projected for t*, to the unit.
        accrued = sim.at_time(t_star)
        assert market.totals()[:2] == (accrued.base_supply_index, accrued.base_borrow_index)
        assert market.totals()[6] == t_star
    finally:
        revert_snapshot(chain, snap)
    snap = take_snapshot(chain)
    try:
        reason = _absorb_at(market, user, t_star - 1)
        assert "NotLiquidatable" in reason, reason
    finally:
        revert_snapshot(chain, snap)

    # At a block stamped t*: isLiquidatable (stored index) still false, but absorb would succeed in this block.
    snap = take_snapshot(chain)
    try:
        block = _mine_at(chain, t_star)
        result = watcher.check()
        assert result.stats["local"].eth_calls == 1 and result.stats["local"].rounds == 1
        p = _only(result, user)
        assert not p.liquidatable and not market.is_liquidatable(user, block)
        assert p.details["absorbable_now"] and p.details["absorb_health"] < WAD <= p.health
        assert p.details["utilization"] == market.comet.functions.getUtilization().call(block_identifier=block)
        assert p.details["borrow_rate_per_second"] == 1665519072
        # Paused absorb (pauseFlags bit 3) is not absorbable, whatever the health.
        market.set_pause_flags(1 << 3)
        p = _only(watcher.check(), user)
        assert p.details["absorb_paused"] and not p.details["absorbable_now"]
    finally:
        revert_snapshot(chain, snap)


# --- symbols, market ids, protocols file ---------------------------------------------------------------------------


def test_decode_symbol() -> None:
    assert decode_symbol(encode(["string"], ["USDC"])) == "USDC"
    assert decode_symbol(b"MKR".ljust(32, b"\0")) == "MKR"  # bytes32 symbols (MKR, SAI)
    for bad in (b"", b"\0" * 32, encode(["string"], ["bad\nline"]), encode(["string"], ["x" * 40]), b"\xff" * 32):
        assert decode_symbol(bad) is None, bad
    assert decode_symbol(encode(["string"], ["USDC"])[:66]) is None  # length word says more than was sent


def test_standin_symbols_from_tokens(chain: Web3) -> None:
    odd = (
        StandInAsset("NOSYM", 18, 10 * 10**8, 50 * WAD // 100, 60 * WAD // 100, 90 * WAD // 100, "reverting"),
        StandInAsset("NOCODE", 18, 10 * 10**8, 50 * WAD // 100, 60 * WAD // 100, 90 * WAD // 100, "none"),
    )
    market = deploy_comet_stand_in(chain, BASE, (*COLLATERALS, *odd))
    [user] = new_addresses(1, "symbols")
    market.set_position(user, 100 * USDC, {"WETH": WETH, "NOSYM": WETH, "NOCODE": WETH})
    watcher = CometStandInWatcher(market, [user])
    first = watcher.check()
    p = _only(first, user)
    shown = {leg.asset: leg.symbol for leg in (*p.collateral, *p.debt)}
    nosym, nocode = market.collaterals["NOSYM"].token, market.collaterals["NOCODE"].token
    # A reverting symbol() and a token without code are shown by address prefix, never an error.
    assert shown == {market.base.token: "USDC", market.collaterals["WETH"].token: "WETH", nosym: nosym[:8]} | {
        nocode: nocode[:8]
    }
    assert {leg.asset: leg.decimals for leg in p.collateral}[market.collaterals["WETH"].token] == 18
    # Symbols are asked once (in the check's last round): later checks call no token, still in one eth_call.
    tokens = {market.base.token, *(a.token for a in market.collaterals.values())}
    assert set(watcher.reader.symbols) == {t.lower() for t in tokens}
    again = watcher.check()
    assert not tokens & {c.target for c in watcher.reader.calls()} and again.stats["local"].eth_calls == 1
    assert {leg.asset: leg.symbol for leg in _only(again, user).collateral} == {
        k: v for k, v in shown.items() if k != market.base.token
    }


def test_standin_two_markets_distinct_keys(chain: Web3) -> None:
    usdc = deploy_comet_stand_in(chain)
    usdt = deploy_comet_stand_in(chain, StandInAsset("USDT", 6, 10**8), salt="second")
    [user] = new_addresses(1, "two")
    usdc.set_position(user, 1_000 * USDC, {"WETH": WETH})
    usdt.set_position(user, 1_700 * USDC, {"WETH": WETH})
    watcher = CometStandInWatcher(usdc, [user], usdt)
    watcher.check()
    result = watcher.check()
    assert result.stats["local"].eth_calls == 1 and result.stats["local"].rounds == 1
    by_market = {p.details["market_id"]: p for p in result.positions}
    assert set(by_market) == {usdc.comet.address.lower(), usdt.comet.address.lower()}
    assert len({p.key for p in result.positions}) == 2
    for m in (usdc, usdt):
        p = by_market[m.comet.address.lower()]
        assert p.key.endswith(":" + m.comet.address.lower()) and p.debt[0].symbol == m.base.symbol
        assert p.liquidatable == m.is_liquidatable(user, p.block.number)
    assert [by_market[m.comet.address.lower()].liquidatable for m in (usdc, usdt)] == [False, True]


@pytest.mark.parametrize("markets, expected", [([], 6), (["usdc", "wstETH"], 2)])
def test_protocols_file_and_make_reader(markets: list[str], expected: int) -> None:
    cfg = parse_config(
        {
            "chains": {"ethereum": {"chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}},
            "deployments": [{"protocol": "compound_v3", "chains": ["ethereum"], "markets": markets}],
            "accounts": [{"address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "label": "main"}],
        }
    )
    deps = resolve_deployments(cfg)
    assert len(deps) == expected and all(d.adapter == "compound_v3" and d.chain_id == 1 for d in deps)
    comets = {d.market: d.address for d in deps}
    assert comets["USDC"] == "0xc3d688B66703497DAA19211EEdff47f25384cdc3"
    readers = [make_reader(d, [Account("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "main")]) for d in deps]
    assert {r.comet for r in readers} == set(comets.values()) and {r.chain for r in readers} == {"ethereum"}


def test_standin_a_reverting_feed_makes_only_its_holders_unknown(chain: Web3) -> None:
    snap = take_snapshot(chain)
    try:
        market = deploy_comet_stand_in(chain)
        weth_user, wbtc_user = new_addresses(2, "broken-feed")
        market.set_position(weth_user, 1_000 * USDC, {"WETH": WETH})
        market.set_position(wbtc_user, 10_000 * USDC, {"WBTC": WBTC})
        watcher = CometStandInWatcher(market, [weth_user, wbtc_user])
        watcher.check()
        market.set_price("WBTC", 0)  # the stand-in's getPrice reverts on a zero price, as a dead feed would
        result = run_check({"local": watcher.client}, list(watcher.readers))
        # isLiquidatable reads only the feeds of held assets: the WETH borrower is still valued, as the contract can
        [p] = result.positions
        assert p.account == weth_user and p.liquidatable == market.is_liquidatable(weth_user, p.block.number)
        [u] = result.unreadable
        assert u.accounts[0].address == wbtc_user and "getPrice reverted" in u.reason
        market.set_price("USDC", 0)  # the base feed values every debt: everyone is unknown
        result = run_check({"local": watcher.client}, list(watcher.readers))
        assert result.positions == [] and len(result.unreadable) == 2
    finally:
        revert_snapshot(chain, snap)


def test_standin_a_reverting_feed_after_the_debt_is_covered_leaves_the_verdict_to_comet(chain: Web3) -> None:
    """WBTC's feed reverts. Comet's isLiquidatable reads WETH (index 0) first and returns false once it covers the
    debt, never reaching WBTC: that account is valued (not liquidatable, health from WETH alone, a lower bound). An
    account whose WETH does not cover its debt makes isLiquidatable revert at WBTC: unknown, as the contract."""
    snap = take_snapshot(chain)
    try:
        market = deploy_comet_stand_in(chain)
        covered, short = new_addresses(2, "early-stop")
        market.set_position(covered, 1_000 * USDC, {"WETH": WETH, "WBTC": WBTC})  # WETH alone covers the debt
        market.set_position(short, 5_000 * USDC, {"WETH": WETH // 10, "WBTC": WBTC})  # it needs the WBTC too
        watcher = CometStandInWatcher(market, [covered, short])
        watcher.check()
        block = market.set_price("WBTC", 0)  # the stand-in's getPrice reverts on a zero price, as a dead feed would
        assert market.is_liquidatable(covered, block) is False  # the contract decides without the dead feed
        with pytest.raises(Exception):  # noqa: B017 - any revert: the contract cannot decide for this one
            market.is_liquidatable(short, block)
        result = run_check({"local": watcher.client}, list(watcher.readers))
        [p] = result.positions
        assert p.account == covered and p.liquidatable is False and p.details["health_lower_bound"] is True
        assert p.health is not None and p.health >= WAD and "stops before it" in p.details["note"]
        [u] = result.unreadable
        assert u.accounts[0].address == short and "getPrice reverted" in u.reason
    finally:
        revert_snapshot(chain, snap)
