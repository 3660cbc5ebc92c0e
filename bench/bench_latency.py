"""Benchmark: detection latency, from the block that moves the price to the message at a local Telegram server.

The daemon runs for real (APScheduler jobs, the outbox relay) against Aave v3.0 on loopback anvil; a Telegram Bot
API stand-in on 127.0.0.1 timestamps each arrival. Each run crashes the WETH price (liquidatable: no confirmation
needed), waits for the alert, restores the price and waits for the recovery message.

Run: python bench/bench_latency.py [--runs 20] [--intervals default,0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import tomllib
from pathlib import Path
from tempfile import TemporaryDirectory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.notify_servers import TelegramStandIn
from watcher.check import build
from watcher.cli import channels_for, connect
from watcher.config import parse_config
from watcher.daemon import Daemon
from watcher.devchain.aave import deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import deploy_batch_reader
from watcher.store import Store

TOKEN = "1:bench"


async def wait_for(server: TelegramStandIn, count: int, timeout: float = 30.0) -> float:
    """Monotonic arrival time of message number `count`."""
    end = time.monotonic() + timeout
    while len(server.received) < count:
        if time.monotonic() > end:
            raise TimeoutError(f"message {count} did not arrive")
        await asyncio.sleep(0.002)
    return server.received[count - 1].at


async def measure(interval: float | None, runs: int) -> list[float]:
    """Latencies (s) over `runs` price crashes with the daemon checking every `interval` seconds."""
    with Anvil() as node, TemporaryDirectory() as tmp:
        w3 = node.w3
        market = deploy_aave(w3, "3.0")
        agg = deploy_batch_reader(w3)
        user = market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
        server = TelegramStandIn(TOKEN).start()
        interval_line = f"interval = {interval}" if interval else ""
        cfg = parse_config(
            tomllib.loads(f"""
[chains.local]
chain_id = {node.chain_id}
rpc_urls = ["{node.url}"]
multicall = "{agg}"
{interval_line}
[[deployments]]
protocol = "aave_v3"
name = "aave"
chains = ["local"]
pool_addresses_provider = "{market.addresses_provider}"
[[accounts]]
address = "{user}"
[alerts]
falling_drop = 100
[notify.telegram]
token = {{ file = "{tmp}/token" }}
chat_id = "42"
base_url = "{server.base_url}"
min_interval = 0
[storage]
path = "{tmp}/w.db"
""")
        )
        Path(tmp, "token").write_text(TOKEN)
        readers = build(cfg)
        daemon = Daemon(cfg, await connect(cfg, {"local"}), readers, Store(cfg.storage.path), channels_for(cfg))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await asyncio.sleep(1.5)  # the first check learns the market
        latencies = []
        expected = 0
        rng = random.Random(7)
        for _ in range(runs):
            w3.provider.make_request("anvil_setBalance", [market.admin, hex(10**24)])  # type: ignore[arg-type]
            await asyncio.sleep(rng.uniform(0, interval or 1.0))  # the crash lands at a random point of the cadence
            await asyncio.to_thread(market.set_price, "WETH", 1_400 * 10**8)  # mined when this returns
            t_block = time.monotonic()
            expected += 1
            arrived = await wait_for(server, expected)
            latencies.append(arrived - t_block)
            await asyncio.to_thread(market.set_price, "WETH", 2_000 * 10**8)
            expected += 1
            await wait_for(server, expected)
            await asyncio.sleep(0.05)
        stop.set()
        await task
        for ch in daemon.channels.values():
            await ch.close()
        server.stop()
        return latencies


def main() -> None:
    """Print median and p95 latency per cadence."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--intervals", default="default,0.1", help="check intervals in seconds; 'default' = chain default")
    args = ap.parse_args()
    for spec in args.intervals.split(","):
        interval = None if spec == "default" else float(spec)
        lat = asyncio.run(measure(interval, args.runs))
        lat_ms = sorted(x * 1000 for x in lat)
        p95 = lat_ms[min(len(lat_ms) - 1, round(0.95 * (len(lat_ms) - 1)))]
        label = "default (1 s, anvil's chain id)" if interval is None else f"{interval} s"
        print(
            f"interval {label:>32}: median {statistics.median(lat_ms):7.1f} ms, p95 {p95:7.1f} ms, "
            f"min {lat_ms[0]:6.1f} ms, max {lat_ms[-1]:7.1f} ms over {len(lat_ms)} price crashes"
        )


if __name__ == "__main__":
    main()
