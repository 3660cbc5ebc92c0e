"""The Compound v3 adapter against our CometStandIn (not Compound's Comet): verdicts equal its isLiquidatable."""

from __future__ import annotations

from web3 import Web3

from tests.aave_helpers import batch_reader
from watcher.adapters.base import Account
from watcher.adapters.compound_v3 import CometAsset, CometSimulator, CompoundV3Reader
from watcher.chain import ChainClient
from watcher.check import CheckResult, run_check
from watcher.devchain.comet import CometStandInMarket, deploy_comet_stand_in, new_addresses
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.model import WAD
from watcher.risk import liquidation_price

USDC, WETH, WBTC = 10**6, 10**18, 10**8


class CometStandInWatcher:
    """The watcher's real read path (ChainClient + run_check) over the stand-in market."""

    def __init__(self, market: CometStandInMarket, users: list[str]) -> None:
        w3 = market.w3
        self.client = ChainClient("local", w3.eth.chain_id, [("local", w3)], batch_reader(w3))
        symbols = {a.token: a.symbol for a in (market.base, *market.collaterals.values())}
        accounts = [Account(u, u[:8]) for u in users]
        self.reader = CompoundV3Reader("compound_v3", "local", market.comet.address, accounts, symbols)

    def check(self) -> CheckResult:
        """One check, as `watcher check` runs it."""
        result = run_check({"local": self.client}, [self.reader])
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
