"""RPC failover over real HTTP: a primary that is down, rate-limited or lagging gives way to the secondary."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from tests.aave_helpers import Watcher
from watcher.chain import ChainClient, HttpTransport
from watcher.devchain.aave import AaveMarket
from watcher.devchain.anvil import Anvil


class Primary:
    """A JSON-RPC proxy in front of anvil that can misbehave: 429s, rate-limit errors, or a stale head."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "ok"
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                # a JSON-RPC batch (the head with its chain id, re-verified) counts as one request
                outer.requests.append(req["method"] if isinstance(req, dict) else "+".join(r["method"] for r in req))
                status, headers, body = outer.answer(req)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, req: dict[str, Any] | list[dict[str, Any]]) -> tuple[int, dict[str, str], bytes]:
        if self.mode == "429":
            return 429, {"Retry-After": "30"}, b"Too Many Requests"
        if isinstance(req, list):
            answers = [json.loads(self.answer(r)[2]) for r in req]
            return 200, {"Content-Type": "application/json"}, json.dumps(answers).encode()
        if self.mode == "rpc-rate-limit":
            err = {
                "jsonrpc": "2.0",
                "id": req["id"],
                "error": {"code": -32005, "message": "daily request count exceeded"},
            }
            return 200, {}, json.dumps(err).encode()
        upstream = requests.post(self.upstream, json=req, timeout=10).json()
        if self.mode == "lagging" and req["method"] == "eth_getBlockByNumber":
            upstream["result"]["number"] = hex(int(upstream["result"]["number"], 16) - 50)
        return 200, {"Content-Type": "application/json"}, json.dumps(upstream).encode()


@pytest.fixture
def primary(anvil: Anvil) -> Iterator[Primary]:
    p = Primary(anvil.url)
    yield p
    p.server.shutdown()
    p.server.server_close()


def _watcher(market: AaveMarket, primary_url: str, secondary_url: str) -> tuple[Watcher, str]:
    user = market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
    w = Watcher(market, [user])
    w.client = ChainClient(
        "local",
        market.w3.eth.chain_id,
        [("primary", HttpTransport(primary_url)), ("secondary", HttpTransport(secondary_url))],
        w.client.multicall,
    )
    return w, user


@pytest.fixture
def anvil_market(anvil: Anvil) -> Iterator[AaveMarket]:
    from watcher.devchain.aave import deploy_aave
    from watcher.devchain.deploy import revert_snapshot, take_snapshot

    snap = take_snapshot(anvil.w3)
    yield deploy_aave(anvil.w3, "3.6")
    revert_snapshot(anvil.w3, snap)


@pytest.mark.parametrize("mode", ["down", "429", "rpc-rate-limit", "lagging"])
def test_secondary_serves_when_primary_fails(
    anvil: Anvil, anvil_market: AaveMarket, primary: Primary, mode: str
) -> None:
    url = "http://127.0.0.1:9" if mode == "down" else primary.url
    primary.mode = mode
    w, user = _watcher(anvil_market, url, anvil.url)
    for _ in range(3):
        result = w.check()
        assert not result.unreadable, result.unreadable[0].reason
        p = {x.account: x for x in result.positions}[user]
        assert p.health == anvil_market.account_data(user, p.block.number)[5]
    if mode in ("429", "rpc-rate-limit"):
        # Told to slow down, the primary rests: one refused request, not one per check.
        assert len(primary.requests) == 1
    if mode == "lagging":
        # Its head is asked for (to spot the lag), but no eth_call goes to a node 50 blocks behind.
        assert "eth_call" not in primary.requests
        assert any("eth_getBlockByNumber" in r for r in primary.requests)
