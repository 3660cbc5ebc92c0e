"""Benchmark: the cost of the forecast figures (time to liquidation, interest per day, APY) next to the check itself.

N Aave v3 borrowers on loopback anvil. Times, per check: the read and health replay (run_check); the position
documents without the figures; with them on a cold cache (every forecast solved); on a warm cache with nothing
changed; and after another user's borrow moved the shared reserve state (ok positions reuse theirs, see
watcher/forecast_doc.py). Also checks every predicted second against the simulator's own verdict. Then the perps
line: N Synthetix perps v3 accounts on our stand-in, funding with a turning point (bench/bench_forecast_perps.py).

Run: python bench/bench_forecast.py [--n 1000] [--aave 3.0] [--repeat 3] [--perps 1000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import watcher.render as render
from bench.bench_check import GAS_BUDGET, borrowers, timed
from bench.bench_forecast_perps import perps_figures
from watcher.adapters.aave_v3 import AaveV3Reader
from watcher.adapters.base import Account
from watcher.chain import ChainClient
from watcher.check import CheckResult, run_check
from watcher.devchain.aave import deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import Tx, advance_time, deploy_batch_reader, send_txs
from watcher.forecast import verdict
from watcher.forecast_doc import DAEMON_BUDGET_S, ForecastCache
from watcher.model import WAD
from watcher.risk import Thresholds

THRESHOLDS = Thresholds(125 * WAD // 100, 110 * WAD // 100, 150 * WAD // 100)


def median_s(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of `repeat` runs (bench_check.timed, without its result)."""
    return timed(fn, repeat)[0]


def docs(result: CheckResult) -> list[dict[str, Any]]:
    """Every position's document, as the API stores it (advice aside: it has its own schedule)."""
    return [render.position_json(p, None, THRESHOLDS) for p in result.positions]


def drain(market: Any) -> None:
    """A whale borrows 95% of what is left of each reserve but WBTC: every borrow rate goes past the kink."""
    whale = market.open_position(None, {"WBTC": 100_000 * 10**8})
    for symbol in ("USDC", "DAI", "WETH"):
        left = int(market.tokens[symbol].functions.balanceOf(market.a_tokens[symbol]).call())
        data = market.pool.encode_abi("borrow", args=[market.assets[symbol], left * 95 // 100, 2, 0, whale])
        send_txs(market.w3, [Tx(whale, market.pool.address, data, 2_000_000, f"whale borrows {symbol}")])


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--aave", default="3.0", choices=("3.0", "3.6"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--perps", type=int, default=1000, help="Synthetix accounts for the perps line (0: none)")
    ap.add_argument("--drain", action="store_true", help="borrow 95%% of every reserve first: rates past the kink")
    args = ap.parse_args()
    with Anvil() as node:
        market = deploy_aave(node.w3, args.aave)
        agg = deploy_batch_reader(node.w3)
        users = market.open_positions_bulk(borrowers(market.new_users(args.n), random.Random(2026)))
        if args.drain:
            drain(market)
        client = ChainClient("anvil", node.w3.eth.chain_id, [("anvil", node.w3)], agg, GAS_BUDGET)
        reader = AaveV3Reader("aave_v3", "anvil", market.addresses_provider, [Account(u, u[:8]) for u in users])
        run_check({"anvil": client}, [reader])  # learn the market
        advance_time(node.w3, 3600)
        check_s = median_s(lambda: run_check({"anvil": client}, [reader]), args.repeat)
        result = run_check({"anvil": client}, [reader])
        n = len(result.positions)

        real_add = render.add_forecast
        render.add_forecast = lambda doc, p, ok=False, cache=None: None  # type: ignore[assignment]
        bare_s = median_s(lambda: docs(result), args.repeat)
        render.add_forecast = real_add

        cache = ForecastCache()

        def with_figures(c: ForecastCache) -> list[dict[str, Any]]:
            render.CACHE = c  # the table's cache
            return [_doc(p, c) for p in result.positions]

        def _doc(p: Any, c: ForecastCache) -> dict[str, Any]:
            doc = render._position_json(p, None, THRESHOLDS, None)
            real_add(doc, p, ok=doc["level"] == "ok", cache=c)
            return doc

        cold_s = median_s(lambda: with_figures(ForecastCache()), args.repeat)
        out = with_figures(cache)
        warm_s = median_s(lambda: with_figures(cache), args.repeat)
        found = [d for d in out if d["time_to_liquidation"]["at"] is not None]
        # every predicted second is the simulator's boundary (the Pool's own check is the test suite's business)
        for p in result.positions:
            f = cache.get(p)
            if f.at is not None and f.at > p.block.timestamp:
                assert verdict(p.simulator.at_time(f.at)) and not verdict(p.simulator.at_time(f.at - 1))

        market.open_position(None, {"WETH": 10**18}, {"USDC": 10**6})  # moves USDC's index, rate and last update
        advance_time(node.w3, 60)
        moved = run_check({"anvil": client}, [reader])
        hits0, misses0 = cache.hits, cache.misses
        t0 = time.perf_counter()
        [_doc(p, cache) for p in moved.positions]
        moved_s = time.perf_counter() - t0
        # `watcher run`: ok positions get DAEMON_BUDGET_S of solving per check, the rest wait or keep older figures
        daemon, per_check = ForecastCache(), []
        while True:
            before = daemon.deferred
            t0 = time.perf_counter()
            with daemon.budget(DAEMON_BUDGET_S):
                [_doc(p, daemon) for p in moved.positions]
            per_check.append(time.perf_counter() - t0)
            if daemon.deferred == before or len(per_check) > 500:
                break
        days = sorted(d["time_to_liquidation"]["seconds"] / 86_400 for d in found)
        print(f"Aave v{args.aave}, N={n} borrowers on loopback anvil; medians of {args.repeat}")
        print(f"  check (read + health replay)          {check_s * 1000:8.1f} ms")
        print(f"  documents without figures             {bare_s * 1000:8.1f} ms")
        print(f"  documents with figures, cold cache    {cold_s * 1000:8.1f} ms  ({cold_s / n * 1e6:.0f} us/position)")
        print(f"  documents with figures, warm cache    {warm_s * 1000:8.1f} ms")
        print(
            f"  after a USDC borrow moved the market  {moved_s * 1000:8.1f} ms  "
            f"({cache.hits - hits0} reused, {cache.misses - misses0} solved)"
        )
        print(
            f"  ratios to the check: cold (check + figures) / (check + bare docs) "
            f"{(check_s + cold_s) / (check_s + bare_s):.2f}x, warm {(check_s + warm_s) / (check_s + bare_s):.2f}x, "
            f"market moved {(check_s + moved_s) / (check_s + bare_s):.2f}x"
        )
        print(
            f"  watcher run, budget {DAEMON_BUDGET_S * 1000:.0f} ms/check: every position had figures after "
            f"{len(per_check)} checks; documents per check max {max(per_check) * 1000:.0f} ms, "
            f"median {statistics.median(per_check) * 1000:.0f} ms"
        )
        median = f"median {statistics.median(days):.1f} days" if days else "none"
        print(f"  {len(found)}/{n} with a time within 10 years ({median})")
    if args.perps:
        print("\n".join(perps_figures(args.perps, args.repeat)))


if __name__ == "__main__":
    main()
