"""Benchmark: time to liquidation for N Synthetix perps v3 accounts on our stand-in (loopback anvil).

Every account holds one ETH long under funding at constant velocity that turns in the longs' favour after a day
(the shape with a turning point): margins spread so that some dip below the requirement and recover, some stay
above, some are short from the start. Times the check and the forecasts on a cold cache, and checks every predicted
second against the simulator's own verdict (the stand-in's canLiquidate is the test suite's business).

Run: python bench/bench_forecast_perps.py [--n 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bench.bench_check import GAS_BUDGET, timed
from watcher.adapters.base import Account
from watcher.adapters.synthetix_perps_v3 import SynthetixPerpsV3Reader
from watcher.chain import ChainClient
from watcher.check import run_check
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import Tx, deploy_batch_reader, send_txs
from watcher.devchain.synthetix import ETH, GAS, deploy_synthetix_stand_in, owner_addresses
from watcher.forecast import DAY, forecast

D18 = 10**18


def perps_figures(n: int, repeat: int) -> list[str]:
    """The Synthetix lines: check time, forecast time per position, how many got a time, all boundaries checked."""
    with Anvil() as node:
        w3 = node.w3
        snx = deploy_synthetix_stand_in(w3)
        agg = deploy_batch_reader(w3)
        now = int(w3.eth.get_block("latest")["timestamp"])
        # 1% a day paid by longs, falling 1% a day per day: ~100 USD over the first day per 10 ETH, then received
        snx.send("setFunding", ETH.market_id, -1_111_111 * D18 // 1_000, D18 // 100, 7 * D18 // 10, now)
        [owner] = owner_addresses(1, "bench")
        rng = random.Random(2026)
        cd, txs = snx._cd, []
        for i in range(1, n + 1):
            usd = rng.randrange(150, 450) * D18  # about 220 USD is required for 10 ETH: short, dipping or safe
            txs.append(Tx(snx.admin, snx.proxy.address, cd.encode("createAccount", i, owner), GAS, "account"))
            txs.append(Tx(snx.admin, snx.proxy.address, cd.encode("setCollateral", i, 0, usd), GAS, "collateral"))
            args = (i, ETH.market_id, 10 * D18, ETH.price, 7 * D18 // 10, 12 * 10**14)
            txs.append(Tx(snx.admin, snx.proxy.address, cd.encode("setPosition", *args), GAS, "position"))
        send_txs(w3, txs, errors_abi=snx.abi)
        client = ChainClient("anvil", w3.eth.chain_id, [("anvil", w3)], agg, GAS_BUDGET)
        ids = list(range(1, n + 1))
        reader = SynthetixPerpsV3Reader("synthetix_perps_v3", "anvil", snx.proxy.address, [Account(owner, "o")], ids)
        check_s, result = timed(lambda: run_check({"anvil": client}, [reader]), repeat)
        positions = result.positions
        t0 = time.perf_counter()
        forecasts = [forecast(p) for p in positions]
        cold_s = time.perf_counter() - t0
        at_start = later = 0
        for p, f in zip(positions, forecasts, strict=True):
            if f.at is None:
                continue
            sim = p.simulator
            assert sim.at_time(f.at).liquidatable()
            if f.at == p.block.timestamp:
                at_start += 1
            else:
                later += 1
                assert not sim.at_time(f.at - 1).liquidatable()
        days = [(f.at - f.start) / DAY for f in forecasts if f.at is not None and f.at > f.start]
        median = f"median {statistics.median(days):.2f} days" if days else "none later"
        return [
            f"Synthetix perps v3 stand-in, N={len(positions)} accounts (funding with a turning point), loopback anvil",
            f"  check (read + margin replay)          {check_s * 1000:8.1f} ms (median of {repeat})",
            f"  forecasts, all solved                 {cold_s * 1000:8.1f} ms  ({cold_s / len(positions) * 1e6:.0f} "
            "us/position)",
            f"  {at_start} liquidatable now, {later} within the dip ({median}), "
            f"{len(positions) - at_start - later} none; every boundary checked at T and T-1",
        ]


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print("\n".join(perps_figures(args.n, args.repeat)))


if __name__ == "__main__":
    main()
