"""Benchmark: the price ladder of 1,000 Aave v3 positions against the check that reads them, on loopback anvil.

The ladder is computed when each position's document is rebuilt, i.e. once per check: this prints what that adds.
It also times `watcher simulate`'s core (one shock over every position, advice included) for scale.

Run: python bench/bench_ladder.py [--n 1000] [--aave 3.0] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

from bench_check import borrowers

from watcher.adapters.aave_v3 import AaveV3Reader
from watcher.adapters.base import Account
from watcher.chain import ChainClient
from watcher.check import run_check
from watcher.devchain.aave import deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import deploy_batch_reader
from watcher.ladder import Ladders, price_ladder
from watcher.model import Level
from watcher.render import position_json
from watcher.risk import Thresholds, advise, level_of
from watcher.whatif import parse_shock, simulate

T = TypeVar("T")
WAD = 10**18
TH = Thresholds(125 * WAD // 100, 110 * WAD // 100, 150 * WAD // 100)


def timed(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Median wall time of `repeat` runs, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out  # type: ignore[return-value]


def main() -> None:
    """Open the borrowers, then time the check, the documents without and with the ladder, and a simulation."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--aave", default="3.0", choices=("3.0", "3.6"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with Anvil() as node:
        market = deploy_aave(node.w3, args.aave)
        agg = deploy_batch_reader(node.w3)
        users = market.open_positions_bulk(borrowers(market.new_users(args.n), random.Random(2026)))
        client = ChainClient("anvil", node.w3.eth.chain_id, [("anvil", node.w3)], agg)
        reader = AaveV3Reader("aave_v3", "anvil", market.addresses_provider, [Account(u, u[:8]) for u in users])
        first = run_check({"anvil": client}, [reader])
        assert not first.unreadable and len(first.positions) == args.n, first.unreadable
        check_s, result = timed(lambda: run_check({"anvil": client}, [reader]), args.repeat)
    positions = result.positions
    docs_s, _ = timed(lambda: [position_json(p, None, TH) for p in positions], args.repeat)
    ladder_s, ladders = timed(lambda: [price_ladder(p) for p in positions], args.repeat)
    # Steady state in the daemon: a ladder is refreshed with the advice, i.e. every check for a position at warn or
    # worse (healthy ones every storage.history_every); the others reuse the kept one.
    due = [level_of(p, TH) is not Level.OK for p in positions]
    kept = Ladders()
    for p in positions:
        kept.for_document(p, refresh=True)
    steady_s, _ = timed(
        lambda: [kept.for_document(p, refresh=d) for p, d in zip(positions, due, strict=True)], args.repeat
    )
    advice_s, _ = timed(lambda: [advise(p, TH.target) for p in positions], max(1, args.repeat // 2))
    shock = [parse_shock("WETH=-20%")]
    sim_s, outcomes = timed(lambda: simulate(positions, shock, None, TH), max(1, args.repeat // 2))
    rungs = sum(len(x["rungs"]) for x in ladders if x)
    with_ladder = sum(1 for x in ladders if x)
    shocked = sum(1 for o in outcomes if o.status == "shocked")
    print(f"Aave v{args.aave}, {args.n} borrowers on loopback anvil; medians of {args.repeat} runs")
    print(f"check (one eth_call, health replayed):   {check_s * 1000:8.1f} ms")
    print(f"documents without the ladder:            {docs_s * 1000:8.1f} ms")
    print(
        f"every ladder ({with_ladder} positions, {rungs} rungs, {rungs / max(with_ladder, 1):.1f} per ladder): "
        f"{ladder_s * 1000:8.1f} ms, {ladder_s / args.n * 1e6:.0f} us per position"
    )
    print(f"  ratio all ladders / check: {ladder_s / check_s:.2f}x (a first check, or every advice due at once)")
    print(
        f"steady state ({sum(due)} of {args.n} at warn or worse refreshed, the rest kept): {steady_s * 1000:8.1f} ms,"
        f" ratio / check {steady_s / check_s:.3f}x"
    )
    print(f"advice (liquidation prices, top-ups, repayments), refreshed with the ladder: {advice_s * 1000:8.1f} ms")
    print(f"  ladder / advice: {ladder_s / advice_s:.2f}x")
    print(f"simulate WETH -20% over {args.n} ({shocked} shocked, advice included): {sim_s * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
