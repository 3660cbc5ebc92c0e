"""GMX v2 between checks: ONE reader kept across checks (as the daemon keeps it), prices moved between them.

Against our GMX stand-in contracts (not GMX's code), whose pending borrowing and funding depend on the prices passed
to getAccountPositionInfoList as GMX's do: a long's borrowing on reserved USD (open interest in tokens at the index
price) over pool USD (at the pool token's price), funding on the collateral token's price. The watcher's verdict and
remaining collateral on the first check after a move must equal the stand-in's own isPositionLiquidatable at the new
prices, for every leg, whatever the reader saw before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from web3 import Web3

from tests.aave_helpers import latest_timestamp, local_client
from watcher.adapters.base import Account
from watcher.adapters.gmx_v2 import (
    FLOAT,
    GmxV2Reader,
    market_key,
    open_interest_in_tokens_key,
    open_interest_key,
    pool_amount_key,
)
from watcher.chain import ChainError
from watcher.check import CheckResult, run_check
from watcher.devchain.comet import new_addresses
from watcher.devchain.gmx import MARKETS, GmxStandIn, deploy_gmx_stand_in
from watcher.model import Position

ETH, BTC, DOGE, USDC = 10**18, 10**8, 10**8, 10**6
USD = FLOAT
DAYS_30 = 30 * 86_400


def accrual_values(gmx: GmxStandIn, since: int) -> dict[bytes, int]:
    """Open interest, pools and rate factors under which borrowing and funding have accrued since `since`.

    DOGE/USD [WETH-USDC]: longs reserve 10,000,000 DOGE (1.5M USD at 0.15) against a 1,000 WETH pool (3M USD at
    3,000): borrowing 1.929e-8 per second * 0.5 for 30 days, about 2.5% of size, rising as ETH falls.
    BTC/USD [USDC-USDC]: longs reserve 50 BTC (3M USD at 60,000) against 4M USDC: about 0.97% of size, rising with BTC.
    ETH/USD [WETH-USDC]: 2.5M USD long against 1M short, longs pay funding in their collateral token at its price.
    """
    eth, btc, doge = (gmx.market(n).address for n in ("ETH/USD", "BTC/USD", "DOGE/USD"))
    weth, usdc = gmx.token("WETH").address, gmx.token("USDC").address
    return {
        # DOGE/USD: index DOGE, long token WETH, short token USDC
        open_interest_key(doge, weth, True): 1_500_000 * USD,
        open_interest_in_tokens_key(doge, weth, True): 10_000_000 * DOGE,
        open_interest_key(doge, usdc, False): 1_000_000 * USD,
        pool_amount_key(doge, weth): 1_000 * ETH,
        pool_amount_key(doge, usdc): 3_000_000 * USDC,
        market_key("BORROWING_FACTOR", doge, True): 1_929 * FLOAT // 10**11,
        market_key("CUMULATIVE_BORROWING_FACTOR_UPDATED_AT", doge, True): since,
        # BTC/USD: single-token pool, each key read for both collateral slots and halved
        open_interest_key(btc, usdc, True): 3_000_000 * USD,
        open_interest_in_tokens_key(btc, usdc, True): 50 * BTC,
        open_interest_key(btc, usdc, False): 2_000_000 * USD,
        pool_amount_key(btc, usdc): 8_000_000 * USDC,
        market_key("BORROWING_FACTOR", btc, True): 5 * FLOAT // 10**9,
        market_key("CUMULATIVE_BORROWING_FACTOR_UPDATED_AT", btc, True): since,
        market_key("BORROWING_FACTOR", btc, False): 2 * FLOAT // 10**9,
        market_key("CUMULATIVE_BORROWING_FACTOR_UPDATED_AT", btc, False): since,
        # ETH/USD: longs pay funding
        open_interest_key(eth, weth, True): 1_500_000 * USD,
        open_interest_key(eth, usdc, True): 1_000_000 * USD,
        open_interest_key(eth, usdc, False): 1_000_000 * USD,
        pool_amount_key(eth, weth): 1_000 * ETH,
        pool_amount_key(eth, usdc): 3_000_000 * USDC,
        market_key("FUNDING_FACTOR", eth): 7 * FLOAT // 10**9,
        market_key("FUNDING_UPDATED_AT", eth): since,
    }


@dataclass(frozen=True)
class LegSpec:
    """A position to open: account index, market, collateral, side, size in USD, size in tokens, collateral."""

    user: int
    market: str
    collateral: str
    is_long: bool
    size_usd: int
    size_tokens: int
    collateral_amount: int


LEGS = (
    # 20,000 USD of DOGE long on 0.25 WETH: liquidatable once ETH is at 2,650 (its borrowing rises as the pool shrinks)
    LegSpec(0, "DOGE/USD", "WETH", True, 20_000 * USD, 133_333_333 * DOGE // 1_000, ETH // 4),
    LegSpec(0, "BTC/USD", "USDC", False, 30_000 * USD, BTC // 2, 2_500 * USDC),
    LegSpec(1, "BTC/USD", "USDC", True, 60_000 * USD, BTC, 3_000 * USDC),
    LegSpec(2, "ETH/USD", "WETH", True, 20_000 * USD, 6_666_666_666_666_666_666, ETH),
    LegSpec(3, "ETH/USD", "USDC", False, 25_000 * USD, 8_333_333_333_333_333_333, 2_000 * USDC),
)


def open_legs(gmx: GmxStandIn, users: list[str]) -> None:
    """Accrual state from 30 days ago, then every leg of LEGS."""
    gmx.set_uints(accrual_values(gmx, latest_timestamp(gmx.w3) - DAYS_30))
    for leg in LEGS:
        gmx.set_position(
            users[leg.user],
            leg.market,
            leg.collateral,
            leg.is_long,
            leg.size_usd,
            leg.size_tokens,
            leg.collateral_amount,
        )


class KeptReader:
    """The watcher's real read path with one reader object kept for every check, as `watcher run` keeps it."""

    def __init__(self, gmx: GmxStandIn, users: list[str]) -> None:
        w3 = gmx.w3
        self.gmx = gmx
        self.users = users
        self.client = local_client(w3)
        self.reader = self.fresh_reader()

    def fresh_reader(self) -> GmxV2Reader:
        """A reader that has seen nothing yet."""
        accounts = [Account(u, f"user{i}") for i, u in enumerate(self.users)]
        gmx = self.gmx
        return GmxV2Reader(
            "gmx_v2", "local", gmx.reader.address, gmx.data_store.address, accounts, symbols=gmx.symbols()
        )

    def check(self, reader: GmxV2Reader | None = None) -> CheckResult:
        """One check of the kept reader (or of `reader`)."""
        result = run_check({"local": self.client}, [reader or self.reader])
        assert not result.unreadable, result.unreadable
        return result


def stand_in_truth(gmx: GmxStandIn, position: Position, leg: Any) -> tuple[bool, str, int, int]:
    """The stand-in's isPositionLiquidatable for a leg at the position's block, with that block's feed prices."""
    block = position.block.number
    market_token = leg.details["market_token"]
    name = next(m.name for m in MARKETS if m.address == market_token)
    props = tuple(gmx.data_store.functions.standInMarket(market_token).call(block_identifier=block))
    liq, reason, info = gmx.reader.functions.isPositionLiquidatable(
        gmx.data_store.address,
        "0x" + "00" * 20,
        bytes.fromhex(leg.details["position_key"][2:]),
        props,
        gmx.prices_for(name, block),
        True,
        True,
    ).call(block_identifier=block)
    return bool(liq), str(reason), int(info[0]), max(int(info[1]), int(info[2]))


def legs_of(result: CheckResult) -> dict[tuple[str, str], tuple[Position, Any]]:
    """(account, market) -> (position, leg)."""
    return {(p.account, leg.market): (p, leg) for p in result.positions for leg in p.perps}


def assert_equal_to_stand_in(gmx: GmxStandIn, result: CheckResult) -> dict[tuple[str, str], tuple[bool, int]]:
    """Every leg's verdict, reason, remaining collateral and requirement equal the stand-in's check; returns them."""
    out = {}
    for (account, market), (p, leg) in legs_of(result).items():
        liq, reason, remaining, required = stand_in_truth(gmx, p, leg)
        ours = (leg.details["reason"] != "", leg.details["reason"], leg.equity, leg.requirement)
        assert ours == (liq, reason, remaining, required), (account, market, ours, (liq, reason, remaining, required))
        out[(account, market)] = (liq, remaining)
    for p in result.positions:
        assert p.liquidatable == any(leg.details["reason"] != "" for leg in p.perps)
    return out


#: (WETH, BTC, DOGE) feed answers per step, whole USD or 8 decimals for DOGE
STEPS = (
    (3_000, 60_000, 15_000_000),  # all healthy
    (2_650, 60_000, 15_000_000),  # ETH -11.7%: the DOGE long's WETH collateral and pool shrink: liquidatable
    (3_000, 60_000, 15_000_000),  # and back: healthy again
    (2_900, 61_500, 15_300_000),  # everything moves a little
    (3_100, 57_000, 16_000_000),
)


def test_one_kept_reader_equals_the_stand_in_on_the_first_check_after_each_move(chain: Web3) -> None:
    gmx = deploy_gmx_stand_in(chain)
    users = new_addresses(4, "gmx-kept")
    open_legs(gmx, users)
    kept = KeptReader(gmx, users)
    first = kept.check()  # a new reader learns markets and feeds over a few rounds
    seen = [assert_equal_to_stand_in(gmx, first)]  #: the first check, then the first check after each move
    rounds: list[tuple[int, int, int]] = []
    sizes: list[list[int]] = []
    steady = 0
    for weth, btc, doge in STEPS[1:]:
        gmx.set_answer("WETH", weth * 10**8)
        gmx.set_answer("BTC", btc * 10**8)
        gmx.set_answer("DOGE", doge)
        moved = kept.check()  # the FIRST check after the move, by the reader that read the old prices
        seen.append(assert_equal_to_stand_in(gmx, moved))
        stats = moved.stats["local"]
        rounds.append((stats.rounds, stats.eth_calls, stats.calls))
        sizes.append(stats.chunk_sizes)
        # A reader that never saw the old prices reads the same block the same way: age does not matter.
        fresh = kept.check(kept.fresh_reader())
        assert fresh.blocks["local"] == moved.blocks["local"]
        assert {k: (leg.equity, leg.details["reason"]) for k, (_, leg) in legs_of(fresh).items()} == {
            k: (leg.equity, leg.details["reason"]) for k, (_, leg) in legs_of(moved).items()
        }
        again = kept.check()  # no move since: one round, the same values
        assert (again.stats["local"].rounds, again.stats["local"].eth_calls) == (1, 1)
        steady = again.stats["local"].chunk_sizes[0]
        assert_equal_to_stand_in(gmx, again)
    print(f"{chain.provider.__class__.__name__}: (rounds, eth_calls, calls) after a move {rounds}, per call {sizes}")
    for i, step in enumerate(seen):
        print(i, {(users.index(a), m[:4]): (liq, f"{r / USD:.2f}") for (a, m), (liq, r) in step.items()})
    # Each first check after a move takes exactly one extra round, which asks only the aggregate's timestamp, the 4
    # feed answers and the infos of the accounts whose markets' prices moved (user1 trades BTC/USD only: not in the
    # ETH-only moves).
    assert all(r == 2 and e == 2 for r, e, _ in rounds), rounds
    assert [s[1] for s in sizes] == [1 + 4 + 3, 1 + 4 + 3, 1 + 4 + 4, 1 + 4 + 4], sizes
    assert all(s[0] == steady for s in sizes), (steady, sizes)
    doge = (users[0], "DOGE/USD [WETH-USDC]")
    assert [step[doge][0] for step in seen] == [False, True, False, False, False]
    assert not any(liq for liq, _ in seen[0].values())
    # The flip is by borrowing priced at the new ETH price: 0.25 WETH at 2,650 less fees, below 0.5% of 20,000 USD.
    assert 0 < seen[1][doge][1] < 100 * USD


def test_a_check_cut_off_after_its_first_round_does_not_price_the_next(chain: Web3) -> None:
    # A check that dies between its two rounds (the node went away) leaves the reader holding a round of a block
    # the next check does not read: that round is dropped and the next check reads its own block in full.
    gmx = deploy_gmx_stand_in(chain)
    users = new_addresses(4, "gmx-cut")
    open_legs(gmx, users)
    kept = KeptReader(gmx, users)
    kept.check()
    real = kept.client.read
    reads = 0

    async def dies_on_the_second_read(calls: Any, block: int, stats: Any = None) -> Any:
        nonlocal reads
        reads += 1
        if reads == 2:
            raise ChainError("chain local: the node went away")
        return await real(calls, block, stats)

    gmx.set_answer("WETH", 2_650 * 10**8)
    kept.client.read = dies_on_the_second_read  # type: ignore[method-assign]
    cut = run_check({"local": kept.client}, [kept.reader])
    assert not cut.positions and cut.unreadable and reads == 2
    kept.client.read = real  # type: ignore[method-assign]
    gmx.set_answer("WETH", 2_700 * 10**8)  # a new block, another price
    result = kept.check()
    # the held round's block is not this one: dropped (1), the full round (2), the infos at this block's prices (3)
    assert result.stats["local"].rounds == 3, result.stats["local"]
    assert_equal_to_stand_in(gmx, result)
