"""Benchmark: block-to-message latency, the old interval poll against following heads, on anvil with a block time.

The daemon runs for real (its chain loop, the outbox relay) against Aave v3.0 on loopback anvil mining every
`--block-time` seconds; a Telegram Bot API stand-in on 127.0.0.1 timestamps each arrival. Each run points the WETH
feed at a crashed price (one transaction, liquidatable: no confirmation needed), waits for the alert, points it back and
waits for the recovery. Latency is from the moment the block holding the crash is announced (the bench's own
`newHeads` subscription on anvil's WebSocket, the earliest any client can know of it) to the message's arrival.
Modes, side by side in one process and one chain:

- interval: `follow_heads = false`, a check every block time (the cadence before heads were followed);
- poll: following heads by `eth_blockNumber` at the default head_poll (interval / 4, at most 1 s);
- poll 0.1: the same at head_poll = 0.1 s;
- ws: `eth_subscribe("newHeads")` over anvil's WebSocket.

Then, with 1,000 borrowers and 1 s blocks, the checks run against the heads seen (`--accounts`).

Run: python bench/bench_latency.py [--block-times 2,12] [--runs 8] [--accounts 1000] [--modes interval,poll,poll0.1,ws]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import time
import tomllib
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_check import borrowers
from tests.telegram_server import TelegramStandIn
from watcher.check import build
from watcher.cli import channels_for, connect
from watcher.config import parse_config
from watcher.daemon import Daemon
from watcher.devchain.aave import AaveMarket, deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import deploy_batch_reader
from watcher.store import Store

TOKEN = "1:bench"
MODES = {
    "interval": "follow_heads = false",
    "poll": "",
    "poll0.1": "head_poll = 0.1",
    "ws": 'ws_url = "{ws}"',
}


def config(
    node: Anvil,
    market: AaveMarket,
    agg: str,
    users: list[str],
    server: TelegramStandIn,
    tmp: str,
    mode: str,
    interval: float,
) -> Any:
    """The daemon's config for one mode."""
    accounts = "\n".join(f'[[accounts]]\naddress = "{u}"' for u in users)
    keys = MODES[mode].format(ws=node.url.replace("http://", "ws://"))
    return parse_config(
        tomllib.loads(f"""
[chains.local]
chain_id = {node.chain_id}
rpc_urls = ["{node.url}"]
multicall = "{agg}"
interval = {interval}
max_block_age = 86400
{keys}
[[deployments]]
protocol = "aave_v3"
name = "aave"
chains = ["local"]
pool_addresses_provider = "{market.addresses_provider}"
{accounts}
[alerts]
falling_drop = 100
[notify.telegram]
token = {{ file = "{tmp}/token" }}
chat_id = "42"
base_url = "{server.base_url}"
min_interval = 0
[storage]
path = "{tmp}/{mode}.db"
""")
    )


async def wait_for(server: TelegramStandIn, word: str, after: int, timeout: float = 60.0) -> tuple[float, int]:
    """Arrival time and index of the first message from index `after` whose first line has `word`; any other
    message on the way (a degraded note, say) is printed, not counted."""
    end = time.monotonic() + timeout
    seen = after
    while True:
        got = list(server.received)
        for i in range(seen, len(got)):
            first = got[i].text.splitlines()[0]
            if word in first:
                return got[i].at, i + 1
            print(f"  (other message: {' | '.join(got[i].text.splitlines()[:2])})")
        seen = len(got)
        if time.monotonic() > end:
            raise TimeoutError(f"no {word} message")
        await asyncio.sleep(0.002)


class HeadClock:
    """When each block was announced on anvil's WebSocket: the reference every mode is measured from.

    A receipt poll is late by its period and its request, so a WebSocket-following daemon could beat it (negative
    latencies); the announcement is what every client learns the block from at the earliest.
    """

    def __init__(self, node: Anvil) -> None:
        self.url = node.url.replace("http://", "ws://")
        self.seen: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> HeadClock:
        self._task = asyncio.create_task(self._follow())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _follow(self) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as ws:
            await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})
            await ws.receive_json()
            self._ready.set()
            async for msg in ws:
                at = time.monotonic()
                head = json.loads(msg.data).get("params", {}).get("result", {})
                if "number" in head:
                    self.seen.setdefault(int(head["number"], 16), at)

    async def mined(self, node: Anvil, tx: bytes) -> float:
        """When the block holding `tx` was announced."""
        while True:
            try:
                receipt = await asyncio.to_thread(node.w3.eth.get_transaction_receipt, tx)  # type: ignore[arg-type]
                break
            except Exception:
                await asyncio.sleep(0.005)
        number = int(receipt["blockNumber"])
        while number not in self.seen:
            await asyncio.sleep(0.001)
        return self.seen[number]


def point(market: AaveMarket, feed: str) -> bytes:
    """Send the one transaction that points the oracle's WETH source at `feed` (mined at the next block)."""
    oracle = market.w3.eth.contract(address=market.oracle.address, abi=market.oracle.abi)
    fn = oracle.functions.setAssetSources([market.assets["WETH"]], [feed])
    return bytes(fn.transact({"from": market.admin}))


async def measure(
    node: Anvil,
    clock: HeadClock,
    market: AaveMarket,
    agg: str,
    user: str,
    feeds: tuple[str, str],
    mode: str,
    block_time: float,
    runs: int,
) -> list[float]:
    """Latencies (s) over `runs` price crashes in one mode.

    Each run starts a fresh daemon at a random point of the block, so a poll's phase against the blocks is random, as
    it is on a real chain whose blocks drift against any timer (a daemon kept across runs locks onto anvil's timer).
    """
    with TemporaryDirectory() as tmp:
        Path(tmp, "token").write_text(TOKEN)
        server = TelegramStandIn(TOKEN).start()
        cfg = config(node, market, agg, [user], server, tmp, mode, block_time)
        latencies = []
        seen = 0
        rng = random.Random(7)
        crash, calm = feeds
        for _ in range(runs):
            await asyncio.sleep(rng.uniform(0, block_time))
            daemon = Daemon(cfg, await connect(cfg, {"local"}), build(cfg), Store(cfg.storage.path), channels_for(cfg))
            stop = asyncio.Event()
            task = asyncio.create_task(daemon.run(stop))
            while daemon.chain_checks["local"] < 1:  # the first check learns the market
                await asyncio.sleep(0.01)
            t_block = await clock.mined(node, await asyncio.to_thread(point, market, crash))
            arrived, seen = await wait_for(server, "LIQUIDATABLE", seen)
            latencies.append(arrived - t_block)
            await clock.mined(node, await asyncio.to_thread(point, market, calm))
            _, seen = await wait_for(server, "RECOVERED", seen)
            stop.set()
            await task
            for ch in daemon.channels.values():
                await ch.close()
            for c in daemon.clients.values():
                await c.close()
        server.stop()
        return latencies


async def keep_up(node: Anvil, market: AaveMarket, agg: str, users: list[str], seconds: float) -> None:
    """With 1 s blocks: checks run against heads seen, for `len(users)` accounts."""
    with TemporaryDirectory() as tmp:
        Path(tmp, "token").write_text(TOKEN)
        server = TelegramStandIn(TOKEN).start()
        cfg = config(node, market, agg, users, server, tmp, "poll", 1.0)
        daemon = Daemon(cfg, await connect(cfg, {"local"}), build(cfg), Store(cfg.storage.path), channels_for(cfg))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await asyncio.sleep(5)  # the first checks learn the market
        heads = daemon.heads["local"]
        assert heads is not None
        h0, c0 = heads.heads_seen, daemon.chain_checks["local"]
        await asyncio.sleep(seconds)
        seen, run = heads.heads_seen - h0, daemon.chain_checks["local"] - c0
        stop.set()
        await task
        for c in daemon.clients.values():
            await c.close()
        server.stop()
        print(
            f"{len(users)} accounts, 1 s blocks, {seconds:.0f} s: {seen} heads seen, {run} checks run"
            f" ({run / max(seen, 1):.2f} checks per head)"
        )


def summary(label: str, lat: list[float]) -> str:
    """Median, p95, min and max in ms."""
    ms = sorted(x * 1000 for x in lat)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return (
        f"{label:<28} median {statistics.median(ms):7.1f} ms, p95 {p95:7.1f} ms, min {ms[0]:6.1f} ms, "
        f"max {ms[-1]:7.1f} ms over {len(ms)} crashes"
    )


async def main_async(args: argparse.Namespace) -> None:
    """Every block time and mode, then the 1,000-account run."""
    with Anvil() as node:
        market = deploy_aave(node.w3, "3.0")
        agg = deploy_batch_reader(node.w3)
        user = market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
        feeds = (market.set_price("WETH", 1_400 * 10**8), market.set_price("WETH", 2_000 * 10**8))
        users = []
        if args.accounts:
            users = market.open_positions_bulk(borrowers(market.new_users(args.accounts), random.Random(2026)))
        for bt in [float(x) for x in args.block_times.split(",")]:
            node.w3.provider.make_request("evm_setIntervalMining", [int(bt)])  # type: ignore[arg-type]
            base = None
            for mode in args.modes.split(","):
                async with HeadClock(node) as clock:
                    lat = await measure(node, clock, market, agg, user, feeds, mode, bt, args.runs)
                med = statistics.median(lat)
                base = base if base is not None else med
                print(
                    summary(f"{bt:g} s blocks, {mode}:", lat)
                    + f", {base / med:5.1f}x faster than {args.modes.split(',')[0]}"
                )
        if users:
            node.w3.provider.make_request("evm_setIntervalMining", [1])  # type: ignore[arg-type]
            await keep_up(node, market, agg, users, args.seconds)


def main() -> None:
    """Parse the arguments and run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block-times", default="2,12", help="anvil block times in seconds")
    ap.add_argument("--runs", type=int, default=8, help="price crashes per mode and block time")
    ap.add_argument("--modes", default="interval,poll,poll0.1,ws")
    ap.add_argument("--accounts", type=int, default=1000, help="accounts for the keep-up run (0: skip it)")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the keep-up run")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
