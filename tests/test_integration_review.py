"""Review of the integration work: failures in one reader or venue stay contained, unknown, and never leak secrets.

A reader that raises something other than ReadError (an adapter bug, a ZeroDivisionError on a zero price) must mark
its own accounts unknown without stopping the chain's other readers; a malformed Morpho event must not poison the
reader's market list; a venue's error must not echo its URL's path or query (they may hold an API key).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from web3 import Web3

from tests.aave_helpers import batch_reader, local_client
from watcher.adapters.base import Account, Call, ReadError
from watcher.adapters.morpho_blue import BORROW_TOPIC, SUPPLY_COLLATERAL_TOPIC, MorphoBlueReader
from watcher.chain import ChainClient, HttpTransport
from watcher.check import check_venues, read_logs, run_check
from watcher.devchain.anvil import Anvil
from watcher.model import BlockRef, Position

ALICE = Account("0x" + "a1" * 20, "alice")
BOB = Account("0x" + "b0" * 20, "bob")


class StubReader:
    """A reader asking one call (the aggregator's own block number), failing where told."""

    def __init__(self, protocol: str, chain: str, agg: str, fail_in: str = "") -> None:
        self.protocol, self.chain, self.agg, self.fail_in = protocol, chain, agg, fail_in
        self.accounts = [ALICE] if fail_in else [BOB]
        self.parsed = 0

    def calls(self) -> list[Call]:
        if self.fail_in == "calls":
            raise ValueError("bad plan")
        return [Call(self.agg, bytes.fromhex("42cbb15c"))]  # getBlockNumber()

    def parse(self, results: Sequence[tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        self.parsed += 1
        if self.fail_in == "parse":
            price = 0  # a feed answering zero
            self.parsed += block.number // price
        assert results[0][0] and int.from_bytes(results[0][1], "big") == block.number
        return []


@pytest.mark.parametrize("fail_in", ["parse", "calls"])
def test_an_unexpected_error_in_one_reader_leaves_it_unknown_and_the_others_read(chain: Web3, fail_in: str) -> None:
    agg = batch_reader(chain)
    client = local_client(chain, agg)
    broken, fine = StubReader("broken", "local", agg, fail_in), StubReader("fine", "local", agg)
    result = run_check({"local": client}, [broken, fine])  # raised ZeroDivisionError / ValueError before the fix
    assert fine.parsed == 1
    [u] = result.unreadable
    assert (u.protocol, u.accounts) == ("broken", (ALICE,))
    want = "ZeroDivisionError" if fail_in == "parse" else "ValueError: bad plan"
    assert f"unexpected {want}" in u.reason
    assert "local" in result.blocks  # the chain itself was read


class LogsClient:
    """A chain client whose eth_getLogs answers the given logs."""

    def __init__(self, logs: list[dict[str, Any]]) -> None:
        self.logs = logs

    async def get_logs(self, address: str, topics: list[Any], from_block: int, to_block: int) -> list[dict[str, Any]]:
        return self.logs if topics[0] == SUPPLY_COLLATERAL_TOPIC else []


@pytest.mark.parametrize("bad_id", ["0x" + "zz" * 32, "0x" + "11" * 33, 7])
def test_a_malformed_morpho_event_is_a_read_error_and_does_not_poison_the_markets(bad_id: Any) -> None:
    good = "0x" + "ab" * 32
    reader = MorphoBlueReader("morpho_blue", "local", "0x" + "cc" * 20, [], [ALICE], 0, rescan_seconds=0)
    owner = "0x" + ALICE.address[2:].rjust(64, "0")
    bad = LogsClient([{"topics": [SUPPLY_COLLATERAL_TOPIC, good, owner, owner]}, {"topics": ["0x", bad_id, owner]}])
    with pytest.raises(ReadError, match="malformed Morpho event"):
        asyncio.run(read_logs(reader, bad, 100))
    assert reader.scanned_to is None  # scanned again next time
    assert all(len(m) == 66 for m in reader.market_ids)
    reader.calls()  # raised ValueError on int("0xzz...", 16) before the fix: every later check crashed
    asyncio.run(read_logs(reader, LogsClient([{"topics": [SUPPLY_COLLATERAL_TOPIC, good, owner, owner]}]), 100))
    assert reader.market_ids == [good] and reader.scanned_to == 100


class FailingVenue:
    """A venue reader whose read fails with an error naming its URL, as aiohttp's errors do."""

    protocol = "hyperliquid"
    chain = "hl"

    def __init__(self, exc: Exception) -> None:
        self.accounts = [ALICE]
        self.skipped: list[tuple[Account, str]] = []
        self.exc = exc

    async def read(self, session: Any) -> list[Position]:
        raise self.exc


URL = "https://hl.example.com/v1/SECRETKEY/info?apikey=SECRET2"


@pytest.mark.parametrize(
    "exc",
    [
        ReadError(f"hyperliquid: clearinghouseState: ClientConnectorError from {URL}: Cannot connect"),
        RuntimeError(f"boom at {URL}, retried"),
    ],
)
def test_a_venue_error_never_echoes_the_url_path_or_query(exc: Exception) -> None:
    result = asyncio.run(check_venues([FailingVenue(exc)], session=object()))
    [u] = result.unreadable
    assert u.accounts == (ALICE,) and not result.positions
    for text in (u.reason, result.degraded["hl"]):
        assert "SECRET" not in text, text
        assert "https://hl.example.com/..." in text  # the host stays: it says which venue failed
    assert "...: Cannot connect" in u.reason or "..., retried" in u.reason


class NoBatchNode:
    """A JSON-RPC proxy in front of anvil that refuses batches, as some public RPCs do (one error object)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.bodies: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if isinstance(req, list):
                    outer.bodies.append("batch")
                    err = {"code": -32600, "message": "Invalid Request: batch requests are not supported"}
                    answer: Any = {"jsonrpc": "2.0", "id": None, "error": err}
                else:
                    outer.bodies.append(req["method"])
                    answer = requests.post(outer.upstream, json=req, timeout=10).json()
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_storage_reads_work_behind_a_node_that_refuses_batches(anvil: Anvil) -> None:
    w3 = anvil.w3
    agg = batch_reader(w3)
    holder = "0x" + "5a" * 20
    value = "0x" + "00" * 16 + "12" * 16
    w3.provider.make_request("anvil_setStorageAt", [holder, hex(7), value])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    node = NoBatchNode(anvil.url)
    try:
        client = ChainClient("local", w3.eth.chain_id, [("nobatch", HttpTransport(node.url))], agg)
        block = w3.eth.block_number
        calls = [Call(holder, b"", slot=7), Call(agg, bytes.fromhex("42cbb15c")), Call(holder, b"", slot=8)]
        _, answers = asyncio.run(client.read(calls, block))  # ChainError "every RPC failed" before the fix
        assert answers[0] == (True, bytes.fromhex(value[2:]))
        assert int.from_bytes(answers[1][1], "big") == block
        assert answers[2] == (True, b"\0" * 32)
        # the batch was tried, then the same calls went one by one, in order
        assert node.bodies == ["batch", "eth_call", "eth_getStorageAt", "eth_getStorageAt"]
    finally:
        node.server.shutdown()
        node.server.server_close()


class _BrokenSimulator:
    """A simulator whose every answer fails, as an adapter bug in the advice path would."""

    def __getattr__(self, name: str) -> Any:
        raise ZeroDivisionError(f"{name}: a bug in the advice path")


def test_a_failing_advice_costs_neither_the_alert_nor_the_commit(tmp_path: Any) -> None:
    from watcher.check import CheckResult
    from watcher.config import parse_config
    from watcher.daemon import Daemon
    from watcher.model import WAD, Leg
    from watcher.store import Store

    cfg = parse_config(
        {
            "chains": {"local": {"chain_id": 31337, "rpc_urls": ["http://127.0.0.1:1"]}},
            "deployments": [{"protocol": "aave_v3", "chains": ["local"], "address": "0x" + "11" * 20}],
            "accounts": [{"address": ALICE.address}],
            "storage": {"path": str(tmp_path / "w.db")},
        }
    )
    leg = Leg("0x" + "22" * 20, "WETH", 18, WAD, 10**8, 10**8, 8_000)
    debt = Leg("0x" + "33" * 20, "USDC", 6, 10**6, 10**8, 95 * 10**6)
    p = Position(
        "aave_v3",
        "local",
        ALICE.address,
        "alice",
        (leg,),
        (debt,),
        WAD * 105 // 100,
        False,
        10**8,
        "USD",
        BlockRef(7, 1_700_000_000),
        simulator=_BrokenSimulator(),  # type: ignore[arg-type]
    )
    daemon = Daemon(cfg, {}, [], Store(cfg.storage.path), {}, clock=lambda: 1_000.0)
    daemon.process("local", CheckResult(positions=[p], blocks={"local": p.block}))
    [alert] = list(daemon.store.db.query("select kind, level from alerts"))
    assert (alert["kind"], alert["level"]) == ("fire", "critical")  # health 1.05: critical, sent despite the bug
    [row] = list(daemon.store.db.query("select level from positions"))
    assert row["level"] == "critical"


class RecordingLogsClient:
    """A chain client that records every eth_getLogs query and answers each with one event of a market id."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, list[Any], int, int]] = []

    async def get_logs(self, address: str, topics: list[Any], from_block: int, to_block: int) -> list[dict[str, Any]]:
        self.asked.append((address, topics, from_block, to_block))
        mid = "0x" + f"{len(self.asked):02x}" * 32
        return [{"topics": [topics[0], mid, topics[2] or "0x"]}]


def test_morpho_discovery_is_log_queries_run_by_the_check_not_the_reader() -> None:
    """The reader only says which logs it needs; the check runs them through the chain client and hands them back."""
    reader = MorphoBlueReader("morpho_blue", "local", "0x" + "cc" * 20, [], [ALICE], 50, rescan_seconds=3600)
    client = RecordingLogsClient()
    asyncio.run(read_logs(reader, client, 100))
    owner = "0x" + ALICE.address[2:].lower().rjust(64, "0")
    # eth_getLogs' own JSON shape: lists for alternatives, None for any topic
    assert [(a, t, lo, hi) for a, t, lo, hi in client.asked] == [
        (reader.morpho, [SUPPLY_COLLATERAL_TOPIC, None, None, [owner]], 50, 100),
        (reader.morpho, [BORROW_TOPIC, None, [owner]], 50, 100),
    ]
    assert reader.market_ids == ["0x" + "01" * 32, "0x" + "02" * 32] and reader.scanned_to == 100
    asyncio.run(read_logs(reader, client, 101))  # within rescan_seconds: nothing is asked
    assert len(client.asked) == 2
    plain = StubReader("stub", "local", "0x" + "dd" * 20)  # a reader without log queries is never asked for them
    asyncio.run(read_logs(plain, client, 102))
    assert len(client.asked) == 2
