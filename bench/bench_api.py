"""Benchmark: GET /positions over 1000 stored positions while the daemon's commits keep landing in the same file.

One real position is read by the real daemon from Aave v3.0 on loopback anvil; its document (legs, liquidation
prices, advice) is copied to 1000 accounts and written through Store.commit. `watcher api` then runs as its own
process over that SQLite file while a thread here re-commits the 1000 position rows every 100 ms (what a check of
1000 positions writes), and 8 aiohttp workers hammer GET /positions for a few seconds.

Run: python bench/bench_api.py [--positions 1000] [--workers 8] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.aave_helpers import batch_reader
from tests.loopback import free_port
from watcher.chain import ChainClient
from watcher.check import build
from watcher.config import parse_config
from watcher.daemon import Daemon
from watcher.devchain.aave import deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.store import Store

TOKEN = "bench-token-0123456789"


def config_text(rpc: str, chain_id: int, multicall: str, provider: str, account: str, db: Path, port: int) -> str:
    """A config for one local chain, the store at `db` and the API on `port`."""
    return f"""
[chains.local]
chain_id = {chain_id}
rpc_urls = ["{rpc}"]
multicall = "{multicall}"

[[deployments]]
protocol = "aave_v3"
name = "aave_local"
chains = ["local"]
pool_addresses_provider = "{provider}"

[[accounts]]
address = "{account}"
label = "bench"

[storage]
path = "{db}"

[api]
port = {port}
token = {{ env = "MW_BENCH_API_TOKEN" }}
"""


def real_row(tmp: Path, port: int) -> tuple[dict[str, Any], str]:
    """One positions-table row written by the real daemon for a real Aave position at risk, and the config text."""
    with Anvil() as node:
        market = deploy_aave(node.w3, "3.0")
        user = market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
        market.set_price("WETH", 1_600 * 10**8)  # critical: the document carries liquidation prices and advice
        text = config_text(
            node.url, node.chain_id, batch_reader(node.w3), market.addresses_provider, user, tmp / "w.db", port
        )
        cfg = parse_config(tomllib.loads(text))
        c = cfg.chains["local"]
        client = ChainClient.from_config("local", c)
        asyncio.run(Daemon(cfg, {"local": client}, build(cfg), Store(tmp / "w.db"), {}).check_chain("local"))
    row = Store(tmp / "w.db").db["positions"].get(f"aave_local:local:{user}")
    return row, text


def copies(row: dict[str, Any], n: int, now: float) -> list[dict[str, Any]]:
    """`n` positions like `row`, one per synthetic account."""
    doc = json.loads(row["doc"])
    out = []
    for i in range(n):
        account = f"0x{i + 1:040x}"
        key = f"aave_local:local:{account}"
        d = doc | {"id": key, "account": account, "label": f"bench{i}", "updated_at": now}
        out.append(row | {"position": key, "account": account, "label": f"bench{i}", "doc": json.dumps(d)})
    return out


def writer(db: Path, rows: list[dict[str, Any]], stop: threading.Event, times: list[float]) -> None:
    """What the daemon does to the file: a commit with every position row, every 100 ms."""
    store = Store(db)
    while not stop.is_set():
        now = time.time()
        for r in rows:
            r["updated_at"] = now
        t0 = time.perf_counter()
        store.commit(now=now, states={}, alerts=[], channels=[], positions=rows)
        times.append(time.perf_counter() - t0)
        stop.wait(0.1)


async def hammer(url: str, workers: int, seconds: float) -> tuple[list[float], int]:
    """Latencies of GET `url` from `workers` concurrent clients for `seconds`, and the count of non-200 replies."""
    latencies: list[float] = []
    bad = 0
    end = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal bad
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            async with session.get(url) as r:
                await r.read()
                bad += r.status != 200
            latencies.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(workers)))
    return latencies, bad


def wait_up(url: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """Until the API answers."""

    async def probe() -> bool:
        try:
            async with aiohttp.ClientSession() as s, s.get(url) as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    end = time.monotonic() + timeout
    while not asyncio.run(probe()):
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError("watcher api did not start")
        time.sleep(0.1)


def main() -> None:
    """Print requests per second and latency percentiles."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--positions", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    with TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        port = free_port()
        row, text = real_row(tmp, port)
        rows = copies(row, args.positions, time.time())
        db = tmp / "bench.db"
        Store(db).commit(now=time.time(), states={}, alerts=[], channels=[], positions=rows)
        (tmp / "config.toml").write_text(text.replace(str(tmp / "w.db"), str(db)))
        env = {**os.environ, "MW_BENCH_API_TOKEN": TOKEN}
        proc = subprocess.Popen(
            [sys.executable, "-m", "watcher.cli", "api", "--config", str(tmp / "config.toml")],
            env=env,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}/positions"
            wait_up(url, proc)
            stop, commit_times = threading.Event(), []
            thread = threading.Thread(target=writer, args=(db, rows, stop, commit_times))
            thread.start()
            t0 = time.perf_counter()
            latencies, bad = asyncio.run(hammer(url, args.workers, args.seconds))
            elapsed = time.perf_counter() - t0
            stop.set()
            thread.join()
        finally:
            proc.terminate()
            proc.wait(10)
    latencies.sort()
    size = len(json.dumps({"positions": [json.loads(r["doc"]) for r in rows]}))
    print(
        f"GET /positions: {args.positions} positions (~{size / 1e6:.2f} MB JSON),"
        f" {args.workers} workers, {elapsed:.1f} s"
    )
    print(f"  requests: {len(latencies)} ({bad} not 200), {len(latencies) / elapsed:.1f} req/s")
    print(
        f"  latency: p50 {statistics.median(latencies) * 1e3:.1f} ms,"
        f" p99 {latencies[int(len(latencies) * 0.99) - 1] * 1e3:.1f} ms, max {latencies[-1] * 1e3:.1f} ms"
    )
    print(
        f"  concurrent writer: {len(commit_times)} commits of {args.positions} position rows,"
        f" median {statistics.median(commit_times) * 1e3:.1f} ms, max {max(commit_times) * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
