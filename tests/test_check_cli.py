"""`watcher check` end to end over real HTTP: anvil with real Aave, a lying node, and a dead one.

A position that cannot be read is reported as unknown (exit code 3), never as healthy, and never with a traceback.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.aave_helpers import batch_reader
from tests.configs import accounts, check_config, local_chain
from watcher.cli import main
from watcher.devchain.aave import AaveMarket, deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.model import WAD


@pytest.fixture(scope="module")
def anvil_market(anvil: Anvil) -> Iterator[AaveMarket]:
    """Aave v3.6 on the session's anvil, for tests that go through HTTP like a user would."""
    w3 = anvil.w3
    snap = take_snapshot(w3)
    yield deploy_aave(w3, "3.6")
    revert_snapshot(w3, snap)


def write_config(
    tmp_path: Path, *, chain_id: int, url: str, multicall: str, provider: str, safe: str, risky: str
) -> Path:
    """The config of these tests: one Aave deployment on chains.local, a safe and a risky account."""
    deployment = {"protocol": "aave_v3", "name": "local_aave", "pool_addresses_provider": provider}
    watched = accounts([safe, risky], ["safe one", "risky one"])
    return check_config(tmp_path / "config.toml", local_chain(chain_id, url, multicall), deployment, watched)


def test_check_json_and_table_on_anvil(
    anvil: Anvil, anvil_market: AaveMarket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = anvil_market
    safe = m.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 5_000 * 10**6})
    risky = m.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 15_000 * 10**6})  # health 1.1
    cfg = write_config(
        tmp_path,
        chain_id=anvil.chain_id,
        url=anvil.url,
        multicall=batch_reader(anvil.w3),
        provider=m.addresses_provider,
        safe=safe,
        risky=risky,
    )
    assert main(["check", "--config", str(cfg), "--json"]) == 1  # something at or below warn
    doc = json.loads(capsys.readouterr().out)
    by = {p["account"]: p for p in doc["positions"]}
    assert set(by) == {safe, risky} and doc["unknown"] == []
    # a named deployment: the id starts with its name, `protocol` says which protocol it is
    assert {(p["protocol"], p["deployment"], p["id"].split(":")[0]) for p in by.values()} == {
        ("aave_v3", "local_aave", "local_aave")
    }
    # A fresh watcher learns the market in a few rounds at one block, one eth_call each.
    reads = doc["reads"]["local"]
    assert 1 <= reads["rounds"] <= 4 and reads["eth_calls"] == reads["rounds"]
    for user, pos in by.items():
        assert pos["health_raw"] == m.account_data(user, pos["block"]["number"])[5]
    assert by[safe]["level"] == "ok" and by[risky]["level"] == "critical"
    assert 109 * WAD // 100 < by[risky]["health_raw"] <= 110 * WAD // 100  # 1.1 at opening, minus interest since
    [weth] = by[risky]["liquidation_prices"][:1]
    assert weth["symbol"] == "WETH" and weth["direction"] == "down" and int(weth["price_raw"]) < 2_000 * 10**8
    tops = by[risky]["advice"]["top_ups"]
    assert tops and all(a["health_after_raw"] >= 3 * WAD // 2 for a in tops)

    assert main(["check", "--config", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "risky one" in out and "critical" in out and "liquidation price" in out


def test_wrong_chain_id_refused(anvil: Anvil, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(
        tmp_path,
        chain_id=1,
        url=anvil.url,
        multicall="0xcA11bde05977b3631167028862bE2a173976CA11",
        provider="0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e",
        safe="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        risky="0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    )
    assert main(["check", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"chains.local.rpc_urls[0] ({anvil.url}) reports chain id {anvil.chain_id}" in err
    assert "chains.local.chain_id is 1" in err


class _LyingNode(BaseHTTPRequestHandler):
    """Answers chain id and block number properly, and eth_call with whatever the test asks for."""

    eth_call_answer: bytes = b""
    status = 200

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if req["method"] == "eth_chainId":
            body = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": "0x7a69"}).encode()
            status = 200
        elif req["method"] == "eth_getBlockByNumber":
            head = {"number": "0x10", "hash": "0x" + "ab" * 32, "timestamp": hex(int(time.time()))}
            body = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": head}).encode()
            status = 200
        else:
            body, status = type(self).eth_call_answer, type(self).status
            if body.startswith(b'{"jsonrpc": "2.0", "id": null'):  # answers the request's own id
                body = body.replace(b'"id": null', f'"id": {req["id"]}'.encode(), 1)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lying_node() -> Iterator[tuple[str, type[_LyingNode]]]:
    handler = type("Handler", (_LyingNode,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def _rpc(result: object, rid: int | None = None) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode()


@pytest.mark.parametrize(
    ("answer", "status", "reason"),
    [
        (b"<html>busy</html>", 200, "answer is not JSON"),
        (_rpc(5), 200, "not hex data"),
        (_rpc("0xzz"), 200, "malformed hex"),
        (_rpc("0x" + "00" * 31), 200, "malformed aggregate answer"),
        (_rpc("0x"), 200, "no aggregate contract answers"),
        (
            json.dumps(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": "header not found"}}
            ).encode(),
            200,
            "header not found",
        ),
        (_rpc("0x" + "00" * 64, rid=999), 200, "carries id 999, not the request's"),  # a lie: another request's answer
        (b"", 500, "HTTP 500"),
        (b"", 429, "rate limited"),
    ],
)
def test_malformed_rpc_answer_is_unknown_not_healthy(
    lying_node: tuple[str, type[_LyingNode]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    answer: bytes,
    status: int,
    reason: str,
) -> None:
    url, handler = lying_node
    handler.eth_call_answer, handler.status = answer, status
    cfg = write_config(
        tmp_path,
        chain_id=31337,
        url=url,
        multicall="0xcA11bde05977b3631167028862bE2a173976CA11",
        provider="0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e",
        safe="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        risky="0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    )
    assert main(["check", "--config", str(cfg), "--json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["positions"] == []
    [unknown] = doc["unknown"]
    assert (unknown["protocol"], unknown["deployment"]) == ("aave_v3", "local_aave") and len(unknown["accounts"]) == 2
    assert reason in unknown["reason"]


def test_dead_fallback_url_warns_and_the_check_goes_on(
    anvil: Anvil, anvil_market: AaveMarket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = anvil_market
    user = m.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 1_000 * 10**6})
    cfg = write_config(
        tmp_path,
        chain_id=anvil.chain_id,
        url=anvil.url,
        multicall=batch_reader(anvil.w3),
        provider=m.addresses_provider,
        safe=user,
        risky="0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    )
    text = cfg.read_text().replace(
        f'rpc_urls = ["{anvil.url}"]', f'rpc_urls = ["http://127.0.0.1:9/SECRET", "{anvil.url}"]'
    )
    cfg.write_text(text)
    assert main(["check", "--config", str(cfg), "--json"]) == 0
    captured = capsys.readouterr()
    assert "warning: chains.local.rpc_urls[0] (http://127.0.0.1:9/...) is unreachable" in captured.err
    assert "SECRET" not in captured.err
    doc = json.loads(captured.out)
    assert {p["account"] for p in doc["positions"]} == {user, "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"}
