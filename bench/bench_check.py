"""Benchmark: one check over N Aave v3 borrowers on loopback anvil, against two baselines in the same process.

- watcher: raw per-user state (configuration, eMode, scaled balances) plus per-reserve data in one batched
  eth_call, health computed exactly in Python;
- naive: one getUserAccountData eth_call per account (what most public bots do);
- batched: the same getUserAccountData calls through the aggregator, chunked under the same gas budget.

Run: python bench/bench_check.py [--sizes 10,100,1000] [--aave 3.0] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

from web3 import Web3

from watcher.abi import Contract, encode_aggregate, word
from watcher.adapters.aave_v3 import AaveV3Reader
from watcher.adapters.base import Account, Call
from watcher.chain import ChainClient, ReadStats
from watcher.check import run_check
from watcher.devchain.aave import RESERVES, AaveMarket, PositionSpec, deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import deploy_batch_reader
from watcher.model import WAD
from watcher.resources import load_abi
from watcher.risk import advise

T = TypeVar("T")
POOL = Contract("IPool")
GAS_BUDGET = 50_000_000  # geth's default eth_call gas cap
SPECS = {r.symbol: r for r in RESERVES}


def borrowers(users: list[str], rng: random.Random) -> list[PositionSpec]:
    """Borrowers with one or two collaterals and one or two debts, at 40-75% of borrowing power."""
    out = []
    for user in users:
        coll = rng.sample(list(SPECS), rng.randint(1, 2))
        supplies = {s: (rng.randint(2_000, 50_000) * 10**8) * 10 ** SPECS[s].decimals // SPECS[s].price for s in coll}
        power = sum(a * SPECS[s].price // 10 ** SPECS[s].decimals * SPECS[s].ltv // 10_000 for s, a in supplies.items())
        debts = rng.sample([s for s in SPECS if s not in coll] or list(SPECS), 1 + (rng.random() < 0.3))
        each = power * rng.randint(40, 75) // 100 // len(debts)
        out.append(PositionSpec(user, supplies, {s: each * 10 ** SPECS[s].decimals // SPECS[s].price for s in debts}))
    return out


def timed(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Median wall time of `repeat` runs, and the last result."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def estimate_gas(w3: Web3, multicall: str, calls: list[Call], block: int) -> int:
    """Gas the node reports for one aggregate of `calls`."""
    data = encode_aggregate([(c.target, c.data) for c in calls])
    return int(w3.eth.estimate_gas({"to": multicall, "data": "0x" + data.hex()}, block_identifier=block))


def bench_size(market: AaveMarket, agg: str, users: list[str], repeat: int) -> dict[str, float]:
    """Time the three ways of checking these borrowers."""
    w3 = market.w3
    n = len(users)
    client = ChainClient("anvil", w3.eth.chain_id, [("anvil", w3)], agg, GAS_BUDGET)
    reader = AaveV3Reader("aave_v3", "anvil", market.addresses_provider, [Account(u, u[:8]) for u in users])
    first = run_check({"anvil": client}, [reader])
    assert not first.unreadable and len(first.positions) == n, first.unreadable

    watcher_s, result = timed(lambda: run_check({"anvil": client}, [reader]), repeat)
    stats = result.stats["anvil"]
    block = result.blocks["anvil"].number
    calls = reader.calls()
    gas = estimate_gas(w3, agg, calls, block)
    t0 = time.perf_counter()
    advices = [advise(p, 150 * WAD // 100) for p in result.positions if p.has_debt]
    advice_s = time.perf_counter() - t0

    pool = market.pool

    def naive() -> list[int]:
        b = w3.eth.block_number
        return [int(pool.functions.getUserAccountData(u).call(block_identifier=b)[5]) for u in users]

    naive_s, naive_hf = timed(naive, max(1, repeat // 2) if n >= 1000 else repeat)

    gaud_gas = estimate_gas(
        w3, agg, [Call(pool.address, POOL.getUserAccountData.encode(u)) for u in users[:10]], block
    ) // min(n, 10)
    gaud_calls = [Call(pool.address, POOL.getUserAccountData.encode(u), gaud_gas) for u in users]
    gaud_stats = ReadStats()

    def batched() -> list[int]:
        b = asyncio.run(client.latest_block())
        _, answers = asyncio.run(client.read(gaud_calls, b, gaud_stats))
        return [word(data, 5) for _, data in answers]

    batched_s, batched_hf = timed(batched, repeat)

    # The same batch the way a web3.py bot writes it: contract objects encode and decode every call.
    mc = w3.eth.contract(address=agg, abi=load_abi("IMulticall3"))
    per_chunk = max(1, GAS_BUDGET // gaud_gas)

    def batched_web3() -> list[int]:
        b = w3.eth.block_number
        out: list[int] = []
        for i in range(0, n, per_chunk):
            chunk = users[i : i + per_chunk]
            reqs = [
                (pool.address, True, pool.functions.getUserAccountData(u)._encode_transaction_data()) for u in chunk
            ]
            for _ok, data in mc.functions.aggregate3(reqs).call(block_identifier=b):
                out.append(int(pool.w3.codec.decode(["uint256"] * 6, data)[5]))
        return out

    web3_s, web3_hf = timed(batched_web3, max(1, repeat // 2) if n >= 1000 else repeat)
    ours = {p.account: p.health if p.health is not None else 2**256 - 1 for p in result.positions}
    assert [ours[u] for u in users] == batched_hf == naive_hf == web3_hf, "health disagrees with getUserAccountData"
    per = len(gaud_stats.chunk_sizes) // repeat
    print(
        f"N={n:>5} | watcher {watcher_s * 1000:7.1f} ms, {stats.eth_calls} eth_call "
        f"({len(calls)} sub-calls, ~{gas / 1e6:.1f}M gas; first check {first.stats['anvil'].rounds} rounds) | "
        f"naive {naive_s * 1000:8.1f} ms, {n} eth_calls | batched GUAD {batched_s * 1000:7.1f} ms, {per} eth_call(s) "
        f"(~{gaud_gas // 1000}k gas each) | batched GUAD via web3.py {web3_s * 1000:7.1f} ms | "
        f"advice for {len(advices)} positions {advice_s * 1000:.0f} ms"
    )
    print(
        f"         ratios: naive/watcher {naive_s / watcher_s:5.1f}x, batched/watcher {batched_s / watcher_s:5.1f}x, "
        f"batched-web3.py/watcher {web3_s / watcher_s:5.1f}x; "
        f"health equal to getUserAccountData for {n}/{n} accounts"
    )
    return {"n": n, "watcher": watcher_s, "naive": naive_s, "batched": batched_s, "batched_web3": web3_s}


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--aave", default="3.0", choices=("3.0", "3.6"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = random.Random(2026)
    print(
        f"Aave v{args.aave} on loopback anvil; times are medians of {args.repeat} checks; gas budget per call "
        f"{GAS_BUDGET / 1e6:.0f}M"
    )
    sizes = [int(x) for x in args.sizes.split(",")]
    with Anvil() as node:
        market = deploy_aave(node.w3, args.aave)
        agg = deploy_batch_reader(node.w3)
        t0 = time.perf_counter()
        users = market.open_positions_bulk(borrowers(market.new_users(max(sizes)), rng))
        print(f"opened {len(users)} borrowers in {time.perf_counter() - t0:.1f} s")
        for n in sizes:
            bench_size(market, agg, users[:n], args.repeat)


if __name__ == "__main__":
    main()
