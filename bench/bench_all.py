"""Benchmark: every on-chain protocol on one anvil chain, read in one batched eth_call per check.

Deploys the real Aave v3.0 and Morpho Blue beside our stand-ins of Compound v3, Maker, Liquity v1/v2, GMX v2 and
Synthetix perps v3 (watcher/devchain/everything.py), opens N positions in each, and times one check three ways in
the same process:

- watcher: all protocols' reads in one aggregate eth_call at one pinned block (storage reads in the same request);
- per protocol: each protocol's reads in its own aggregate eth_call (what one bot per protocol does);
- naive: one eth_call (or eth_getStorageAt) per read.

All three parse and value the same answers the same way (the valuation, with each perp's liquidation price, is the
same cost in each), and must agree. Batches are sized by gas estimates made for the REAL contracts (a GMX Reader
getAccountPositionInfoList is estimated at 3M gas an account), so large GMX or Synthetix books split into a few calls
under the default 50M budget even though the stand-ins are cheaper; --gas-budget shows the effect.

Run: python bench/bench_all.py [--per-protocol 5] [--repeat 5] [--gas-budget 50000000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

from watcher.adapters.base import Call
from watcher.chain import DEFAULT_GAS_BUDGET, ChainClient, ReadStats
from watcher.check import run_check
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import deploy_batch_reader
from watcher.devchain.everything import deploy_everything
from watcher.model import BlockRef, Position

T = TypeVar("T")


def timed(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Median wall time of `repeat` runs, and the last result."""
    times = []
    out: T
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def naive(client: ChainClient, calls: list[Call], block: int) -> list[tuple[bool, bytes]]:
    """One request per read, no aggregator."""
    out = []
    for c in calls:
        if c.slot is not None:
            raw = asyncio.run(client._each("eth_getStorageAt", [c.target, hex(c.slot), hex(block)]))
            out.append((True, bytes.fromhex(raw[2:].rjust(64, "0"))))
            continue
        try:
            out.append((True, asyncio.run(client.raw_call(c.target, c.data, block))))
        except Exception:  # a read that reverts is an answer too (the aggregate reports it as failed)
            out.append((False, b""))
    return out


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--per-protocol", type=int, default=5, help="positions per protocol")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--gas-budget", type=int, default=DEFAULT_GAS_BUDGET, help="estimated gas per batched eth_call")
    args = ap.parse_args()
    with Anvil() as anvil:
        w3 = anvil.w3
        t0 = time.perf_counter()
        world = deploy_everything(w3, args.per_protocol)
        print(
            f"deployed {len(world.deployments)} deployments, {args.per_protocol} positions each, "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        agg = deploy_batch_reader(w3)
        client = ChainClient("local", w3.eth.chain_id, [("local", w3)], agg, gas_budget=args.gas_budget)
        readers = world.readers()
        learn = run_check({"local": client}, readers)
        assert not learn.unreadable, learn.unreadable
        print(
            f"first check (learning): {learn.stats['local'].rounds} rounds, {learn.stats['local'].eth_calls} eth_calls"
        )

        t_watch, result = timed(lambda: run_check({"local": client}, readers), args.repeat)
        assert not result.unreadable, result.unreadable
        stats = result.stats["local"]
        block = result.blocks["local"].number
        plans = [r.calls() for r in readers]
        flat = [c for plan in plans for c in plan]

        def parse_all(answers: list[tuple[bool, bytes]], ts: int) -> list[Position]:
            out: list[Position] = []
            offset = 0
            for reader, plan in zip(readers, plans, strict=True):
                got = reader.parse(answers[offset : offset + len(plan)], BlockRef(block, ts))
                assert got is not None
                out += got
                offset += len(plan)
            return out

        def per_protocol() -> tuple[int, list[Position]]:
            answers: list[tuple[bool, bytes]] = []
            calls, ts = 0, 0
            for plan in plans:
                s = ReadStats()
                ts, got = asyncio.run(client.read(plan, block, s))
                answers += got
                calls += s.eth_calls
            return calls, parse_all(answers, ts)

        ts = result.blocks["local"].timestamp
        t_per, (per_calls, per_positions) = timed(per_protocol, args.repeat)
        t_naive, naive_positions = timed(lambda: parse_all(naive(client, flat, block), ts), max(1, args.repeat // 2))
        health = {p.key: p.health for p in result.positions}
        assert {p.key: p.health for p in per_positions} == health == {p.key: p.health for p in naive_positions}
        t_parse, _ = timed(lambda: parse_all(asyncio.run(client.read(flat, block))[1], ts), args.repeat)

        print()
        print(f"{'deployment':20} {'kind':9} {'positions':>9} {'reads':>6}")
        for dep, plan in zip(world.deployments, plans, strict=True):
            n = sum(1 for p in result.positions if p.protocol == dep.name)
            print(f"{dep.name:20} {world.kind[dep.name]:9} {n:>9} {len(plan):>6}")
        print(
            f"{'all':20} {'':9} {len(result.positions):>9} {len(flat):>6}  "
            f"(of which {sum(c.slot is not None for c in flat)} storage reads)"
        )
        print()
        print(f"{'method':14} {'eth_calls':>9} {'ms/check':>9} {'ratio':>6}")
        print(f"{'watcher':14} {stats.eth_calls:>9} {t_watch * 1e3:>9.1f} {1.0:>6.1f}")
        print(f"{'per protocol':14} {per_calls:>9} {t_per * 1e3:>9.1f} {t_per / t_watch:>6.1f}")
        print(f"{'naive':14} {len(flat):>9} {t_naive * 1e3:>9.1f} {t_naive / t_watch:>6.1f}")
        print(
            f"(each includes parsing and valuation: about {t_parse * 1e3:.1f} ms read+parse in one call; "
            f"estimated gas {sum(c.gas for c in flat):,}, budget {args.gas_budget:,})"
        )


if __name__ == "__main__":
    main()
