"""Benchmark: the cost of the liquidation probabilities next to the check itself.

N Aave v3.0 borrowers on loopback anvil, their oracle reading round-keeping feeds (our RoundFeedStandIn, 500 rounds
of a random walk each). Times one check (read + health replay), then Outlook.estimate over its positions: cold
(the oracle's sources and every feed's rounds read, then the probabilities), at the same block (the histories
cached: the computation alone), and the Monte Carlo the closed form is checked against, for a sample of positions.
Then what `watcher run` adds to each check (engine/probabilities.py, staged with the check): after a new round (every
estimate computed again from the cached rounds) and at unchanged inputs (every estimate kept). Last, perp accounts on
two coins (the nearest point of their boundary) against accounts on one (the closed form), the computation alone.

Run: python bench/bench_probability.py [--n 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from bench.bench_check import GAS_BUDGET, SPECS, borrowers, timed
from watcher.adapters.aave_v3 import AaveV3Reader
from watcher.adapters.base import Account
from watcher.chain import ChainClient
from watcher.check import run_check
from watcher.config.models import ProbabilityConfig
from watcher.devchain.aave import deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import Calldata, Tx, deploy_batch_reader, send_txs
from watcher.devchain.feeds import deploy_round_feed
from watcher.engine.probabilities import Probabilities
from watcher.engine.publish import Check, Staged
from watcher.model import BlockRef, PerpLeg, Position
from watcher.outlook import Outlook
from watcher.perp_boundary import perp_monte_carlo
from watcher.probability import YEAR, liquidation_probability

SIGMAS = {"WETH": 0.8, "WBTC": 0.6, "USDC": 0.02, "DAI": 0.03}


class _Cfg:
    """What the probability listener reads of a config: [probability] at its defaults."""

    probability = ProbabilityConfig()


def median_s(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of `repeat` runs (bench_check.timed, without its result)."""
    return timed(fn, repeat)[0]


def walk(price: int, sigma: float, rounds: int, end: int, rng: random.Random) -> list[tuple[int, int]]:
    """`rounds` hourly rounds of a driftless log walk ending at `price` at time `end`."""
    x, out = 0.0, []
    for _ in range(rounds):
        out.append(x)
        x += sigma * math.sqrt(3600 / YEAR) * rng.gauss(0.0, 1.0)
    last = out[-1]
    return [(end - (rounds - 1 - i) * 3600, max(1, round(price * math.exp(v - last)))) for i, v in enumerate(out)]


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mc-sample", type=int, default=5, help="positions to time the Monte Carlo on")
    args = ap.parse_args()
    rng = random.Random(2026)
    with Anvil() as node:
        market = deploy_aave(node.w3, "3.0")
        agg = deploy_batch_reader(node.w3)
        now = node.w3.eth.get_block("latest")["timestamp"]
        feeds = {s: deploy_round_feed(node.w3, walk(SPECS[s].price, SIGMAS.get(s, 0.5), 500, now, rng)) for s in SPECS}
        data = Calldata(market.oracle.abi).encode(
            "setAssetSources", [market.assets[s] for s in feeds], [f.address for f in feeds.values()]
        )
        send_txs(node.w3, [Tx(market.admin, market.oracle.address, data, 1_000_000, "setAssetSources")])
        users = market.open_positions_bulk(borrowers(market.new_users(args.n), rng))
        client = ChainClient("anvil", node.w3.eth.chain_id, [("anvil", node.w3)], agg, GAS_BUDGET)
        reader = AaveV3Reader("aave_v3", "anvil", market.addresses_provider, [Account(u, u[:8]) for u in users])
        run_check({"anvil": client}, [reader])  # learn the market
        check_s = median_s(lambda: run_check({"anvil": client}, [reader]), args.repeat)
        result = run_check({"anvil": client}, [reader])
        positions = result.positions
        clients = {"anvil": client}

        def cold() -> dict[str, Any]:
            return asyncio.run(Outlook().estimate(positions, clients))

        cold_s = median_s(cold, args.repeat)
        warm = Outlook()
        asyncio.run(warm.estimate(positions, clients))
        warm_s = median_s(lambda: asyncio.run(warm.estimate(positions, clients)), args.repeat)
        estimates = asyncio.run(warm.estimate(positions, clients))
        models = Counter(e[1].model.split(" (")[-1].rstrip(")") for e in estimates.values())
        # each source is learned by a path ending at getSourceOfAsset(asset): the asset is that call's argument
        histories = {lk.steps[-1].args[0]: warm._feeds[("anvil", f)].rounds for (_, lk), f in warm._sources.items()}
        multi = [p for p in positions if len({leg.asset for leg in (*p.collateral, *p.debt)}) > 2][: args.mc_sample]
        t0 = time.perf_counter()
        for p in multi:
            liquidation_probability(p, histories, model="monte_carlo")
        mc_s = (time.perf_counter() - t0) / max(1, len(multi))
        listener = Probabilities(_Cfg(), clients)  # type: ignore[arg-type]
        asyncio.run(listener.outlook.refresh(positions, clients))
        check = Check("anvil", result, time.time(), 15 * 10**17)

        def new_round_on_path() -> None:
            listener.outlook._version += 1  # what a new round does: every position's inputs change
            listener.stage(check, Staged(check.now))

        def new_round_off_path() -> None:
            listener.outlook._version += 1
            asyncio.run(listener._reestimate(positions))  # what the background task does after its refresh

        moved_s = median_s(new_round_on_path, args.repeat)  # had the check estimated them itself
        off_s = median_s(new_round_off_path, args.repeat)
        kept_s = median_s(lambda: listener.stage(check, Staged(check.now)), args.repeat)
        n = len(positions)
        print(f"Aave v3.0, N={n} borrowers on loopback anvil, feeds of 500 rounds; medians of {args.repeat}")
        print(f"  check (read + health replay)               {check_s * 1000:8.1f} ms")
        print(f"  probabilities, cold (sources, rounds, math) {cold_s * 1000:8.1f} ms  ({cold_s / n * 1e6:.0f} us/pos)")
        print(f"  probabilities, histories cached (math only) {warm_s * 1000:8.1f} ms  ({warm_s / n * 1e6:.0f} us/pos)")
        print(f"  ratio to the check: cold {cold_s / check_s:.2f}x, cached {warm_s / check_s:.2f}x")
        print(f"  models: {dict(models)}")
        print(f"  Monte Carlo (2000 paths x 24 steps x 3 horizons), per position of 3+ assets: {mc_s * 1000:.0f} ms")
        print("  watcher run (history reads and the estimates a new round changes run after the commit):")
        print(f"    a new round, estimated off the check {off_s * 1000:7.1f} ms ({off_s / check_s:.2f}x the check)")
        print(f"    the same, were the check to do it    {moved_s * 1000:7.1f} ms ({moved_s / check_s:.2f}x the check)")
        print(f"    added to the check (all kept)        {kept_s * 1000:7.1f} ms ({kept_s / check_s:.3f}x the check)")
    perps_figures(n, args.repeat)


def perps_figures(n: int, repeat: int) -> None:
    """Perp accounts on one coin (the closed form) against accounts on two (the nearest point of the boundary), the
    histories shared as the outlook shares them; no chain, the computation alone."""
    rng, end = random.Random(11), 1_800_000_000
    eth, btc = walk(3_000, 0.8, 500, end, rng), walk(60_000, 0.6, 500, end, rng)

    def leg(market: str, size: int, mark: int, liq: int) -> PerpLeg:
        return PerpLeg(
            market, size, 0, Fraction(mark), Fraction(mark), 0, 0, Fraction(0), liquidation_price=Fraction(liq)
        )

    def account(i: int, *legs: PerpLeg) -> Position:
        return Position("hyperliquid", "hl", f"0x{i:040x}", "", (), (), 2 * 10**18, False, 10**6, "USD",
                        BlockRef(0, end), perps=legs)  # fmt: skip

    one = [account(i, leg("ETH", 10, 3_000, 2_400 + i % 400)) for i in range(n)]
    two = [account(i, leg("ETH", 10, 3_000, 2_000 + i % 400), leg("BTC", 1, 60_000, 40_000 + i)) for i in range(n)]
    hedged = [account(i, leg("ETH", 10, 3_000, 2_000 + i % 400), leg("BTC", -1, 60_000, 80_000 + i)) for i in range(n)]
    histories = {"ETH": eth, "BTC": btc}

    def estimate(accounts: list[Position]) -> None:
        memo: dict[tuple[str, ...], Any] = {}
        for a in accounts:
            liquidation_probability(a, histories, cache=memo)

    one_s, two_s = median_s(lambda: estimate(one), repeat), median_s(lambda: estimate(two), repeat)
    hedge_s = median_s(lambda: estimate(hedged), repeat)
    start = time.perf_counter()
    perp_monte_carlo(two[0].perps, {0: "ETH", 1: "BTC"}, {"ETH": 0.8, "BTC": 0.6}, [[1.0, 0.0], [0.0, 1.0]], 7 * 86_400)
    mc_s = time.perf_counter() - start
    print(f"perp accounts, N={n}, 3 horizons, histories of 500 hourly closes shared; medians of {repeat}")
    print(f"  one coin (closed form)                     {one_s * 1000:8.1f} ms  ({one_s / n * 1e6:.0f} us/account)")
    print(f"  two coins, both long (nearest point)       {two_s * 1000:8.1f} ms  ({two_s / n * 1e6:.0f} us/account)")
    print(
        f"  two coins, long against short (rays)       {hedge_s * 1000:8.1f} ms  ({hedge_s / n * 1e6:.0f} us/account)"
    )
    print(f"  ratio to one coin: two longs {two_s / one_s:.2f}x, a hedge {hedge_s / one_s:.2f}x")
    print(f"  Monte Carlo of the same model (4000 paths x 48 steps, one horizon), one account: {mc_s * 1000:.0f} ms")


if __name__ == "__main__":
    main()
