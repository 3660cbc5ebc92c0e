"""The Morpho Blue adapter against the real Morpho Blue 1.0.0 (compiled from npm): verdicts equal liquidate()'s."""

from __future__ import annotations

from web3 import Web3

from tests.aave_helpers import latest_timestamp, local_client, next_block_at
from watcher.adapters.base import Account
from watcher.adapters.morpho_blue import MorphoBlueReader, MorphoSimulator
from watcher.check import CheckResult, run_check
from watcher.devchain.deploy import advance_time, revert_snapshot, take_snapshot
from watcher.devchain.morpho import MorphoMarket, deploy_morpho
from watcher.model import WAD, Position
from watcher.risk import advise, liquidation_price

USDC, WETH = 10**6, 10**18


class MorphoWatcher:
    """The watcher's real read path (ChainClient + run_check) over one local Morpho market."""

    def __init__(self, market: MorphoMarket, users: list[str]) -> None:
        w3 = market.w3
        self.client = local_client(w3)
        accounts = [Account(u, u[:8]) for u in users]
        self.reader = MorphoBlueReader("morpho_blue", "local", market.morpho.address, [market.market_id], accounts)

    def check(self) -> CheckResult:
        """One check, as `watcher check` runs it."""
        result = run_check({"local": self.client}, [self.reader])
        assert not result.unreadable, result.unreadable
        return result


def _open(market: MorphoMarket, positions: list[tuple[int, int]]) -> list[str]:
    users = market.new_users(len(positions))
    for user, (collateral, borrow) in zip(users, positions, strict=True):
        market.open_position(user, collateral, borrow)
    return users


def _assert_verdicts(market: MorphoMarket, watcher: MorphoWatcher, liquidator: str) -> list[bool]:
    """The watcher's verdict for each position equals whether liquidate() succeeds at the check's block."""
    verdicts = []
    for p in watcher.check().positions:
        contract = market.can_liquidate(liquidator, p.account, p.block.number)
        assert p.liquidatable == contract, (p.account, p.health, p.details, contract)
        assert p.liquidatable == (p.health is not None and p.health < WAD)
        verdicts.append(contract)
    return verdicts


def test_verdict_equals_liquidate_as_interest_accrues(chain: Web3) -> None:
    # 10k USDC liquidity and ~6.9k borrowed: IrmMock's rate is utilization per year, so interest shows quickly.
    market = deploy_morpho(chain, liquidity=10_000 * USDC)
    # At 2000 USDC/WETH and LLTV 0.86, 1 WETH may borrow at most 1720 USDC.
    borrows = [1_000 * USDC, 1_700 * USDC, 1_719_990_000, 1_720 * USDC - 1_000, 1_720 * USDC - 10]
    users = _open(market, [(WETH, b) for b in borrows])
    watcher = MorphoWatcher(market, users)
    liquidator = market.liquidator()
    seen: list[list[bool]] = [_assert_verdicts(market, watcher, liquidator)]
    for seconds in (1, 60, 3_600, 86_400, 30 * 86_400):
        advance_time(chain, seconds)
        seen.append(_assert_verdicts(market, watcher, liquidator))
    # The price falls: the safest position turns liquidatable too.
    market.set_price(market.price() * 58 // 100)
    seen.append(_assert_verdicts(market, watcher, liquidator))
    print(f"{chain.provider.__class__.__name__} verdicts per step: {seen}")
    assert seen[-1] == [True] * len(users)
    assert any(not v for row in seen for v in row) and any(v for row in seen for v in row)
    # Interest turns positions liquidatable one by one, the fullest first.
    assert seen[-2] == sorted(seen[-2])


def _liquidatable_at_price(market: MorphoMarket, liquidator: str, user: str, price: int, timestamp: int) -> bool:
    """Set the oracle price in a block stamped `timestamp`; whether liquidate() succeeds there. State rolled back."""
    snap = take_snapshot(market.w3)
    try:
        next_block_at(market.w3, timestamp)
        block = market.set_price(price)
        assert market.w3.eth.get_block(block)["timestamp"] == timestamp
        return market.can_liquidate(liquidator, user, block)
    finally:
        revert_snapshot(market.w3, snap)


def test_liquidation_price_is_the_contracts_boundary(chain: Web3) -> None:
    market = deploy_morpho(chain, liquidity=2_500 * USDC)
    [user] = _open(market, [(WETH, 1_500 * USDC)])
    watcher = MorphoWatcher(market, [user])
    liquidator = market.liquidator()
    [position] = watcher.check().positions
    assert position.health is not None and position.health > WAD and not position.liquidatable
    sim = position.simulator
    assert isinstance(sim, MorphoSimulator)
    for delay in (0, 7 * 86_400):
        when = latest_timestamp(chain) + 100 + delay
        lp = liquidation_price(sim.at_time(when), position.collateral[0])
        assert lp is not None and lp.falling and lp.current == market.price()
        assert _liquidatable_at_price(market, liquidator, user, lp.price, when)
        assert not _liquidatable_at_price(market, liquidator, user, lp.price + 1, when)
        print(f"{chain.provider.__class__.__name__} +{delay}s: boundary {lp.price}")
    # Interest over the week raised the debt, so the boundary moved up; the documented zero-interest
    # boundary for 1 WETH / 1500 USDC at LLTV 0.86 is 1744186046999999999999999999.
    no_time = liquidation_price(sim, position.collateral[0])
    assert no_time is not None
    assert no_time.price >= 1_744_186_046_999_999_999_999_999_999


def test_advice_restores_target(chain: Web3) -> None:
    market = deploy_morpho(chain, liquidity=5_000 * USDC)
    [user] = _open(market, [(WETH, 1_700 * USDC)])
    [position] = MorphoWatcher(market, [user]).check().positions
    target = 11 * WAD // 10
    advice = advise(position, target)
    [top_up] = advice.top_ups
    [repay] = advice.repayments
    assert top_up.feasible and top_up.health_after is not None and top_up.health_after >= target
    assert repay.feasible and (repay.health_after is None or repay.health_after >= target)
    sim = position.simulator
    assert isinstance(sim, MorphoSimulator)
    # One unit less is not enough: the amounts are the least that reach the target.
    assert (sim.with_supply(top_up.asset, top_up.amount - 1).health() or 0) < target


def test_one_eth_call_per_check(chain: Web3) -> None:
    market = deploy_morpho(chain, liquidity=10_000 * USDC)
    users = _open(market, [(WETH, 1_000 * USDC), (2 * WETH, 3_000 * USDC), (WETH, 0)])
    watcher = MorphoWatcher(market, users)
    first = watcher.check()
    # Learning the market params and struct takes one more round once.
    assert first.stats["local"].rounds <= 3 and len(first.positions) == 3
    for _ in range(3):
        advance_time(chain, 600)
        again = watcher.check()
        stats = again.stats["local"]
        assert stats.eth_calls == 1 and stats.rounds == 1, stats
        assert len(again.positions) == 3
    # A transaction on the market changes its struct: borrowRateView must be asked again, at the same block.
    market.open_position(users[2], WETH, 100 * USDC)
    changed = watcher.check()
    assert changed.stats["local"].rounds == 2
    steady = watcher.check()
    assert steady.stats["local"].eth_calls == 1
    p: Position = {q.account: q for q in steady.positions}[users[2]]
    assert p.debt[0].amount >= 100 * USDC and p.collateral[0].amount == 2 * WETH


def test_markets_are_discovered_from_the_accounts_events(chain: Web3) -> None:
    market = deploy_morpho(chain, liquidity=10_000 * USDC)
    borrower, collateral_only, outsider, late = market.new_users(4)
    market.open_position(borrower, WETH, 1_000 * USDC)
    market.open_position(collateral_only, WETH, 0)
    w3 = market.w3
    client = local_client(w3)
    accounts = [Account(u, u[:8]) for u in (borrower, collateral_only, outsider, late)]
    # no market configured: the reader scans Morpho's SupplyCollateral and Borrow logs for the accounts
    reader = MorphoBlueReader("morpho_blue", "local", market.morpho.address, [], accounts, 0, rescan_seconds=0)
    result = run_check({"local": client}, [reader])
    assert not result.unreadable
    assert reader.market_ids == [market.market_id]
    assert {p.account for p in result.positions} == {borrower, collateral_only}  # the others are in no market
    assert {p.account: p.has_debt for p in result.positions} == {borrower: True, collateral_only: False}
    scanned = reader.scanned_to
    # a later position is found by the next scan, which starts where the last one ended
    market.open_position(late, WETH, 500 * USDC)
    result = run_check({"local": client}, [reader])
    assert {p.account for p in result.positions} == {borrower, collateral_only, late}
    assert reader.scanned_to is not None and scanned is not None and reader.scanned_to > scanned
    assert reader.market_ids == [market.market_id]  # found again, not added twice
