"""The local HTTP API against a real server on 127.0.0.1, over a store filled by the real daemon (Aave on anvil).

Every request goes through `Client`, which also checks that no secret of the config (the bot token, the API token,
the RPC URL with a key in its path) is in any response's headers or body.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.notify_servers import TelegramStandIn, free_port
from tests.test_daemon import Clock, config_text, make_daemon, step
from watcher.api import OPENAPI, make_app, serve
from watcher.config import Config, ConfigError, parse_config
from watcher.devchain.aave import AaveMarket, deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.notify import outbox
from watcher.store import Store

BOT_TOKEN = "123456:SECRET-BOT-TOKEN"
API_TOKEN = "api-SECRET-TOKEN-0123456789"
RPC_KEY = "SECRETRPCKEY42"


@dataclass
class World:
    """A store filled by the real daemon, and everything needed to make more of it."""

    anvil: Anvil
    market: AaveMarket
    telegram: TelegramStandIn
    config_text: str
    cfg: Config
    db: Path
    safe: str  #: a healthy account
    risky: str  #: a liquidatable account
    clock: Clock

    @property
    def secrets(self) -> list[str]:
        return [BOT_TOKEN, API_TOKEN, RPC_KEY, rpc_url(self.anvil)]


def rpc_url(anvil: Anvil) -> str:
    """A working RPC URL with a key in it (anvil answers 404 to a key in the path, but ignores a query string)."""
    return f"{anvil.url}/?key={RPC_KEY}"


def world_config(
    anvil: Anvil,
    market: AaveMarket,
    users: list[str],
    telegram: TelegramStandIn,
    db: Path,
    stale_after: float = 86_400,
) -> str:
    """The daemon tests' config, with a key in the RPC URL, a closed SMTP port and an [api] section (the last
    table, so a test can append keys to it).

    `stale_after`: a day by default, so a reading made by the tests' stepped clock is fresh for the API's.
    """
    text = config_text(anvil, market, users, telegram, free_port(), db)
    text = text.replace(f'rpc_urls = ["{anvil.url}"]', f'rpc_urls = ["{rpc_url(anvil)}"]\nstale_after = {stale_after}')
    return text + '\n[api]\nhost = "127.0.0.1"\nport = 0\ntoken = { env = "MW_TEST_API_TOKEN" }\n'


@pytest.fixture(scope="module")
def world(anvil: Anvil, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    snap = take_snapshot(anvil.w3)
    market = deploy_aave(anvil.w3, "3.0")
    telegram = TelegramStandIn(BOT_TOKEN).start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MW_TEST_TG_TOKEN", BOT_TOKEN)
        mp.setenv("MW_TEST_API_TOKEN", API_TOKEN)
        safe = market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 1_000 * 10**6})
        risky = market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})  # health 1.375
        db = tmp_path_factory.mktemp("api") / "watcher.db"
        text = world_config(anvil, market, [safe, risky], telegram, db)
        cfg = parse_config(tomllib.loads(text))
        clock = Clock()
        clock.t = float(int(time.time()) - 600)  # minutes old for the API (on the real clock), in whole seconds

        async def populate() -> None:
            d = make_daemon(cfg, db, clock)
            for price in (2_000, 1_400):  # ok, then the risky account is liquidatable
                market.set_price("WETH", price * 10**8)
                await step(d, clock)
            for ch in d.channels.values():
                await ch.close()

        asyncio.run(populate())
        try:
            yield World(anvil, market, telegram, text, cfg, db, safe, risky, clock)
        finally:
            telegram.stop()
            revert_snapshot(anvil.w3, snap)


class Server:
    """The API app served by aiohttp on 127.0.0.1 in a thread of its own (its own loop and SQLite connection)."""

    def __init__(
        self, db: Path, cfg: Config, token: str | None = API_TOKEN, live: dict[str, Any] | None = None
    ) -> None:
        self.db, self.cfg, self.token, self.live = db, cfg, token, live
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        app = make_app(Store(self.db), self.cfg, token=self.token, host="127.0.0.1", port=0, live=self.live)
        runner, self.port = await serve(app, "127.0.0.1", 0)
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> Server:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class Client:
    """http.client against the server; every reply is checked for secrets and CORS headers."""

    def __init__(self, port: int, secrets: list[str]) -> None:
        self.port, self.secrets = port, secrets

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = None, host: str = "") -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Host": host or f"127.0.0.1:{self.port}"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else (body if isinstance(body, str) else json.dumps(body))
        if data is not None:
            headers["Content-Type"] = "application/json"
            headers["Content-Length"] = str(len(data.encode()))
        # skip_host: the Host header is ours to choose (the DNS rebinding tests send a wrong one).
        conn.putrequest(method, path, skip_host=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders(data.encode() if data is not None else None)
        resp = conn.getresponse()
        reply = Reply(resp.status, dict(resp.getheaders()), resp.read().decode())
        conn.close()
        everything = reply.text + json.dumps(reply.headers)
        for secret in self.secrets:
            assert secret not in everything, f"a secret leaked from {method} {path}"
        assert not [h for h in reply.headers if h.lower().startswith("access-control-")], "no CORS headers at all"
        assert "Traceback" not in reply.text
        return reply

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, body, **kw)


@pytest.fixture
def client(world: World) -> Iterator[Client]:
    with Server(world.db, world.cfg) as server:
        yield Client(server.port, world.secrets)


def key(world: World, account: str) -> str:
    return f"aave_local:local:{account}"


def test_health_positions_and_history(world: World, client: Client) -> None:
    h = client.get("/health").json()
    local = h["chains"]["local"]
    assert h["status"] == "ok" and local["degraded"] is False and local["reason"] == ""
    assert local["last_ok"] == h["last_check"] == world.clock.t - 60 and local["last_block"] > 0
    assert local["lag_seconds"] is not None and local["last_check_seconds"] > 0 and local["rpc_errors"] == 0

    docs = client.get("/positions").json()["positions"]
    assert {d["id"] for d in docs} == {key(world, world.safe), key(world, world.risky)}
    [liq] = client.get("/positions?level=liquidatable").json()["positions"]
    assert liq["account"] == world.risky and liq["liquidatable"] is True
    # Amounts come as raw integers beside exact decimal strings.
    assert Decimal(liq["health"]) == Decimal(liq["health_raw"]).scaleb(-18)
    weth = liq["collateral"][0]
    assert weth["symbol"] == "WETH" and weth["amount"] == "10" and weth["amount_raw"] == 10 * 10**18
    [ok] = client.get(f"/positions?account={world.safe.lower()}&protocol=aave_local&chain=local").json()["positions"]
    assert ok["level"] == "ok"
    assert client.get("/positions?chain=elsewhere").json()["positions"] == []
    # The id starts with the deployment's name; ?protocol= finds it by its protocol as well as by that name.
    both = {key(world, world.safe), key(world, world.risky)}
    for query in ("protocol=aave_v3", "protocol=aave_local", "deployment=aave_local"):
        assert {d["id"] for d in client.get(f"/positions?{query}").json()["positions"]} == both, query
    assert client.get("/positions?deployment=aave_v3").json()["positions"] == []
    assert {(d["protocol"], d["deployment"]) for d in docs} == {("aave_v3", "aave_local")}

    one = client.get(f"/positions/{key(world, world.risky)}").json()
    assert one["id"] == key(world, world.risky) and one["debt"][0]["symbol"] == "USDC"
    # An address pasted lower case (as explorers print it) names the same position.
    assert client.get(f"/positions/{key(world, world.risky.lower())}").json()["id"] == key(world, world.risky)
    lower_history = client.get(f"/positions/{key(world, world.risky.lower())}/history").json()
    assert lower_history["position"] == key(world, world.risky) and len(lower_history["history"]) == 2
    lp = next(lp for lp in one["liquidation_prices"] if lp["symbol"] == "WETH")
    assert lp["direction"] == "down" and int(lp["price_raw"]) > 1_400 * 10**8
    assert one["advice"]["top_ups"] and one["advice_at"] == world.clock.t - 60

    path = f"/positions/{key(world, world.risky)}/history"
    assert len(client.get(path).json()["history"]) == 2
    t_last = world.clock.t - 60
    [last] = client.get(f"{path}?since={int(t_last)}").json()["history"]
    assert last["level"] == "liquidatable" and last["block_hash"].startswith("0x") and last["health_raw"] < 10**18
    iso = datetime.fromtimestamp(t_last, UTC).isoformat()
    assert client.get(f"{path}?since={quote(iso)}").json()["history"] == [last]
    assert client.get(f"{path}?since={iso.replace('+00:00', 'Z')}").json()["history"] == [last]
    assert client.get(f"{path}?since=2099-01-01T00:00:00Z").json()["history"] == []


def test_alerts_with_delivery_status_and_ack(world: World, client: Client) -> None:
    found = client.get("/alerts").json()["alerts"]
    liq = next(a for a in found if a["level"] == "liquidatable")
    assert liq["position"] == key(world, world.risky) and liq["open"] is True and liq["acked_at"] is None
    by_channel = {d["channel"]: d for d in liq["deliveries"]}
    assert by_channel["telegram"]["status"] == "delivered" and by_channel["telegram"]["attempts"] == 1
    # Nothing listens on the email port: the row waits for a retry and says why.
    assert by_channel["email"]["status"] == "pending" and by_channel["email"]["last_error"]
    assert liq["id"] in [a["id"] for a in client.get("/alerts?open=true").json()["alerts"]]
    lower = client.get(f"/alerts?position={key(world, world.risky.lower())}").json()["alerts"]
    assert liq["id"] in [a["id"] for a in lower] and {a["position"] for a in lower} == {key(world, world.risky)}

    acked = client.post(f"/alerts/{liq['id']}/ack", token=API_TOKEN)
    assert acked.status == 200 and acked.json()["acked_at"] is not None and acked.json()["open"] is False
    assert liq["id"] not in [a["id"] for a in client.get("/alerts?open=true").json()["alerts"]]
    assert Store(world.db).db["alerts"].get(liq["id"])["acked_at"] == acked.json()["acked_at"]
    assert client.post("/alerts/no-such-alert/ack", token=API_TOKEN).status == 404


def test_metrics_and_openapi(world: World, client: Client) -> None:
    reply = client.get("/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    samples = {s.labels["position"]: s for s in families["margin_watcher_position_health"].samples}
    risky = samples[key(world, world.risky)]
    stored = Store(world.db).db["positions"].get(key(world, world.risky))
    assert risky.value == pytest.approx(int(stored["health"]) / 10**18, rel=1e-12) and risky.value < 1
    assert risky.labels == {
        "position": key(world, world.risky),
        "protocol": "aave_v3",
        "deployment": "aave_local",
        "chain": "local",
        "account": world.risky,
    }
    assert samples[key(world, world.safe)].value > 1.25
    assert families["margin_watcher_check_duration_seconds"].samples[0].value > 0
    assert families["margin_watcher_rpc_errors"].type == "counter"
    [errors] = [s for s in families["margin_watcher_rpc_errors"].samples if s.name.endswith("_total")]
    assert errors.labels == {"chain": "local"} and errors.value == 0
    depth = families["margin_watcher_outbox_depth"].samples[0].value
    assert depth == outbox.depth(Store(world.db).db) > 0  # the email rows wait

    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/health",
        "/positions",
        "/positions/{id}",
        "/positions/{id}/history",
        "/positions/{id}/simulate",
        "/alerts",
        "/alerts/{id}/ack",
        "/silences",
        "/silences/{id}",
        "/metrics",
        "/openapi.json",
        "/",
        "/ui/positions/{id}",
    }


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/positions?level=bogus", "level"),
        ("/positions?account=0x1234", "account"),
        ("/positions?account=not-an-address", "account"),
        ("/positions?colour=red", "colour"),
        ("/positions/{id}/history?since=yesterday", "since"),
        ("/positions/{id}/history?since=nan", "since"),
        ("/positions/{id}/history?limit=0", "limit"),
        ("/alerts?open=maybe", "open"),
    ],
)
def test_bad_queries_are_400_naming_the_parameter(world: World, client: Client, path: str, names: str) -> None:
    reply = client.get(path.replace("{id}", key(world, world.risky)))
    assert reply.status == 400
    body = reply.json()["error"]
    assert body["status"] == 400 and names in body["message"]


def test_unknown_ids_are_404_and_errors_are_json(world: World, client: Client) -> None:
    for path in ("/positions/aave_local:local:0xnope", "/positions/nope/history", "/nowhere"):
        reply = client.get(path)
        assert reply.status == 404 and reply.json()["error"]["status"] == 404
    reply = client.request("DELETE", "/positions", token=API_TOKEN)
    assert reply.status == 405 and reply.json()["error"]["status"] == 405


def test_tokens_hosts_and_bad_bodies(world: World, client: Client) -> None:
    until = time.time() + 3600
    body = {"account": world.safe, "until": until}
    for token in (None, "wrong"):
        reply = client.post("/silences", body, token=token)
        assert reply.status == 401 and reply.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/silences").json()["silences"] == []
    # DNS rebinding: a page at evil.example resolved to 127.0.0.1 sends its own name as Host.
    for host in (f"evil.example:{client.port}", f"127.0.0.1:{client.port + 1}", "127.0.0.1"):
        assert client.get("/positions", host=host).status == 421
    assert client.get("/health", host=f"localhost:{client.port}").status == 200
    # A CORS preflight gets no Access-Control-* header (Client checks every reply for them).
    assert client.request("OPTIONS", "/positions", token=API_TOKEN).status in (401, 405)

    bad = [
        ("not json", "body"),
        ({"until": until}, "account or position"),
        ({"account": world.safe, "position": "x", "until": until}, "account or position"),
        ({"account": "0xabc", "until": until}, "account"),
        ({"account": world.safe, "until": "tomorrow"}, "until"),
        ({"account": world.safe, "until": 1000}, "until"),
        ({"account": world.safe}, "until"),
        ({"account": world.safe, "until": until, "why": "x"}, "why"),
    ]
    for payload, names in bad:
        reply = client.post("/silences", payload, token=API_TOKEN)
        assert reply.status == 400 and names in reply.json()["error"]["message"], payload

    iso = datetime.fromtimestamp(until, UTC).isoformat()
    made = client.post("/silences", {"account": world.safe.lower(), "until": iso}, token=API_TOKEN)
    assert made.status == 201 and made.json()["account"] == world.safe and made.json()["until"] == pytest.approx(until)
    assert [s["id"] for s in client.get("/silences").json()["silences"]] == [made.json()["id"]]


def test_writes_need_a_configured_token(world: World) -> None:
    with Server(world.db, world.cfg, token=None) as server:
        c = Client(server.port, world.secrets)
        assert c.get("/health").status == 200
        assert c.post("/silences", {"position": "x", "until": time.time() + 60}, token="anything").status == 403


def test_unexpected_errors_are_a_bare_500(world: World, tmp_path: Path) -> None:
    broken = tmp_path / "broken.db"
    Store(broken).db["positions"].insert({"position": "p", "doc": "{not json"})
    with Server(broken, world.cfg) as server:
        reply = Client(server.port, world.secrets).get("/positions/p")
    assert reply.status == 500 and reply.json() == {"error": {"status": 500, "message": "internal error"}}


def test_non_loopback_bind_needs_a_token(world: World, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"api\.host: 0\.0\.0\.0 is not a loopback address"):
        make_app(Store(tmp_path / "x.db"), world.cfg, token=None, host="0.0.0.0", port=8765)
    text = world.config_text.replace('host = "127.0.0.1"\nport = 0\ntoken = { env = "MW_TEST_API_TOKEN" }', "")
    path = tmp_path / "config.toml"
    path.write_text(text + 'host = "0.0.0.0"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "api", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MW_TEST_TG_TOKEN": BOT_TOKEN},
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "watcher: error: api.host: 0.0.0.0 is not a loopback address; set api.token to serve the API there"
    ]


def test_non_loopback_bind_with_a_token_needs_it_for_reads(world: World) -> None:
    app = make_app(Store(world.db), world.cfg, token=API_TOKEN, host="0.0.0.0", port=0)

    async def probe() -> tuple[int, int]:
        runner, port = await serve(app, "127.0.0.1", 0)  # served on loopback, configured as a wildcard bind
        try:
            import aiohttp

            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{port}/health") as r1:
                    anonymous = r1.status
                async with s.get(
                    f"http://127.0.0.1:{port}/health", headers={"Authorization": f"Bearer {API_TOKEN}"}
                ) as r2:
                    authorised = r2.status
            return anonymous, authorised
        finally:
            await runner.cleanup()

    assert asyncio.run(probe()) == (401, 200)


def test_watcher_api_process_serves_the_store_and_stops_on_sigterm(world: World, tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "config.toml"
    path.write_text(world.config_text.replace("port = 0\n", f"port = {port}\n"))
    env = {**os.environ, "MW_TEST_API_TOKEN": API_TOKEN}  # no bot token: `watcher api` sends nothing
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcher.cli", "api", "--config", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        c = Client(port, world.secrets)
        end = time.monotonic() + 30
        while True:
            try:
                health = c.get("/health")
                break
            except ConnectionRefusedError:
                assert proc.poll() is None and time.monotonic() < end
                time.sleep(0.05)
        assert health.status == 200 and health.json()["chains"]["local"]["degraded"] is False
        assert len(c.get("/positions").json()["positions"]) == 2
        assert c.post("/silences", {"position": "x", "until": time.time() + 60}).status == 401
        families = {f.name for f in text_string_to_metric_families(c.get("/metrics").text)}
        assert {"margin_watcher_position_health", "margin_watcher_outbox_depth"} <= families
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert {"api listening", "stopped"} <= {entry["msg"] for entry in logs}
    for secret in world.secrets:
        assert secret not in err and secret not in out


def test_a_silence_stops_notifications_until_it_ends(world: World, tmp_path: Path) -> None:
    market, telegram = world.market, world.telegram
    market.set_price("WETH", 2_000 * 10**8)
    user = market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
    db = tmp_path / "silence.db"
    text = world_config(world.anvil, market, [user], telegram, db)
    cfg = parse_config(tomllib.loads(text))
    clock = Clock()
    clock.t = time.time()  # the API checks a silence's `until` against the real clock
    sent = len(telegram.received)
    position = f"aave_local:local:{user}"

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MW_TEST_TG_TOKEN", BOT_TOKEN)

        async def scenario() -> None:
            d = make_daemon(cfg, db, clock)
            await step(d, clock)  # healthy: nothing to say
            with Server(db, cfg) as server:
                until = clock.t + 600
                reply = Client(server.port, world.secrets).post(
                    "/silences", {"position": position, "until": until}, token=API_TOKEN
                )
                assert reply.status == 201
            market.set_price("WETH", 1_400 * 10**8)
            await step(d, clock)  # liquidatable, silenced: stored, not sent
            rows = list(Store(db).db["alerts"].rows_where("position = ?", [position]))
            assert {(r["kind"], r["silenced"]) for r in rows} == {("fire", 1), ("falling_fast", 1)}
            assert (
                Store(db)
                .db["outbox"]
                .count_where(f"alert_id in ({', '.join('?' * len(rows))})", [r["id"] for r in rows])
                == 0
            )
            assert len(telegram.received) == sent
            # The state still moves on: the position and its history are stored.
            stored = Store(db).db["positions"].get(position)
            assert stored["level"] == "liquidatable"
            assert Store(db).db["history"].count_where("position = ?", [position]) == 2
            clock.t = until + 1
            await step(d, clock)  # the silence is over and the repeat is due (300 s): delivered
            for ch in d.channels.values():
                await ch.close()

        asyncio.run(scenario())
    assert len(telegram.received) == sent + 1 and "LIQUIDATABLE (still)" in telegram.received[-1].text
    market.set_price("WETH", 1_400 * 10**8)


def test_watcher_run_serves_the_api_beside_the_daemon(world: World, tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "run.db"
    path = tmp_path / "config.toml"
    path.write_text(
        world_config(world.anvil, world.market, [world.risky], world.telegram, db).replace(
            "port = 0\n", f"port = {port}\n"
        )
    )
    env = {**os.environ, "MW_TEST_API_TOKEN": API_TOKEN, "MW_TEST_TG_TOKEN": BOT_TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcher.cli", "run", "--config", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        c = Client(port, world.secrets)
        end = time.monotonic() + 30
        found: list[Any] = []
        while not found:
            assert proc.poll() is None and time.monotonic() < end
            with contextlib.suppress(ConnectionRefusedError):
                found = c.get("/positions").json()["positions"]
            time.sleep(0.05)
        assert found[0]["account"] == world.risky and found[0]["level"] == "liquidatable"
        assert c.get("/health").json()["chains"]["local"]["last_block"] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    for secret in world.secrets:
        assert secret not in err and secret not in out


def test_advice_is_computed_for_healthy_positions_only_every_history_every(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watcher.engine.publish

    calls: list[str] = []
    real = watcher.engine.publish.advise

    def counting(p: Any, target: int) -> Any:
        calls.append(p.key)
        return real(p, target)

    monkeypatch.setattr(watcher.engine.publish, "advise", counting)
    monkeypatch.setenv("MW_TEST_TG_TOKEN", BOT_TOKEN)
    cfg = parse_config(
        tomllib.loads(
            world_config(world.anvil, world.market, [world.safe, world.risky], world.telegram, tmp_path / "a.db")
        )
    )
    clock = Clock()
    d = make_daemon(cfg, tmp_path / "a.db", clock)
    safe, risky = key(world, world.safe), key(world, world.risky)
    for _ in range(3):
        asyncio.run(d.check_chain("local"))
        clock.t += 60
    # The liquidatable position gets advice every check; the healthy one once (then again after history_every).
    assert calls.count(risky) == 3 and calls.count(safe) == 1
    doc = json.loads(Store(tmp_path / "a.db").db["positions"].get(safe)["doc"])
    assert doc["advice"] is not None and doc["advice_at"] == clock.t - 180 and doc["updated_at"] == clock.t - 60
    clock.t += cfg.storage.history_every
    asyncio.run(d.check_chain("local"))
    assert calls.count(safe) == 2


def read_then_lose_the_node(world: World, db: Path, checks: int) -> tuple[Config, Clock]:
    """One good check of the risky account into `db`, then `checks` more a minute apart with the node gone."""
    from watcher.chain import ChainClient

    cfg = parse_config(tomllib.loads(world_config(world.anvil, world.market, [world.risky], world.telegram, db)))
    clock = Clock()
    d = make_daemon(cfg, db, clock)
    asyncio.run(d.check_chain("local"))
    c = cfg.chains["local"]
    d.sources["local"].client = ChainClient.from_urls(  # type: ignore[attr-defined]
        "local", c.chain_id, ["http://127.0.0.1:9"], c.multicall, c.call_gas_budget
    )
    for _ in range(checks):
        clock.t += 60
        asyncio.run(d.check_chain("local"))
    return cfg, clock


def test_an_unreadable_chain_makes_positions_unknown_and_counts_rpc_errors(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MW_TEST_TG_TOKEN", BOT_TOKEN)
    db = tmp_path / "u.db"
    cfg, clock = read_then_lose_the_node(world, db, checks=2)
    with Server(db, cfg) as server:
        client = Client(server.port, world.secrets)
        [doc] = client.get("/positions?level=unknown").json()["positions"]
        health = client.get("/health").json()
        metrics = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert doc["account"] == world.risky and doc["updated_at"] == clock.t - 120  # the last good reading, kept
    assert health["status"] == "degraded" and health["chains"]["local"]["rpc_errors"] == 2
    assert "every RPC failed" in health["chains"]["local"]["reason"]
    assert metrics["margin_watcher_position_health"].samples == []  # unknown is not a health figure
    [errors] = [s for s in metrics["margin_watcher_rpc_errors"].samples if s.name.endswith("_total")]
    assert errors.value == 2


# --- API hardening: URL-safe ids, silences, strict parameters, slow clients, staleness


def api_cfg(world: World, extra: str = "", db: Path | None = None, stale_after: float = 86_400) -> Config:
    """The world's config with keys appended to its [api] table, parsed as `watcher` parses a config file."""
    text = world_config(
        world.anvil, world.market, [world.safe, world.risky], world.telegram, db or world.db, stale_after
    )
    return parse_config(tomllib.loads(text + extra))


def test_an_alert_id_from_a_ref_line_acks_in_a_url_unchanged(world: World, client: Client) -> None:
    risky = key(world, world.risky)
    refs = [
        m.group(1)
        for r in world.telegram.received
        for m in re.finditer(r"^ref: (\S+)$", r.text, re.M)
        if m.group(1).startswith(risky + ":")
    ]
    stored = {r["id"] for r in Store(world.db).db["alerts"].rows_where("position = ?", [risky])}
    refs = [r for r in refs if r in stored]
    assert f"{risky}:e1:liquidatable" in refs and any(r.startswith(f"{risky}:fall@") for r in refs)
    for ref in refs:
        assert "#" not in ref
        reply = client.post(f"/alerts/{ref}/ack", token=API_TOKEN)  # the text of the ref: line, not re-encoded
        assert reply.status == 200 and reply.json()["id"] == ref and reply.json()["acked_at"] is not None


def test_silences_until_is_bounded_listing_never_fails_and_delete_removes(world: World, tmp_path: Path) -> None:
    db = tmp_path / "silences.db"
    store = Store(db)
    now = time.time()
    # Rows an earlier version stored: milliseconds (year 59000), infinity, 1e300.
    with store.db.atomic():
        for until in (now * 1000, float("inf"), 1e300):
            store.db.execute(
                "insert into silences (account, position, until, created_at) values (null, 'p', ?, ?)", [until, now]
            )
    with Server(db, world.cfg) as server:
        c = Client(server.port, world.secrets)
        listed = c.get("/silences")
        assert listed.status == 200
        old = listed.json()["silences"]
        assert len(old) == 3 and all(s["until_iso"] is None for s in old)
        assert {s["until"] for s in old} == {now * 1000, None, 1e300}

        for until in (int(now * 1000), now * 1000, now + 367 * 86400):
            reply = c.post("/silences", {"position": "p", "until": until}, token=API_TOKEN)
            assert reply.status == 400, until
            message = reply.json()["error"]["message"]
            assert message.startswith("until: ") and "is more than 366 days ahead" in message
            assert message.endswith("send unix seconds, not milliseconds")
        for until in (10**30, 10**400, 1e308, "1e12", "1_000_000_000_000", "١٧٠٠٠٠٠٠٠٠", True, None):
            reply = c.post("/silences", {"position": "p", "until": until}, token=API_TOKEN)
            assert reply.status == 400 and "until" in reply.json()["error"]["message"], until
        assert c.post("/silences", '{"position": "\\ud800", "until": 1}', token=API_TOKEN).status == 400
        assert len(c.get("/silences").json()["silences"]) == 3  # nothing refused was stored

        made = c.post("/silences", {"position": "p", "until": now + 366 * 86400 - 60}, token=API_TOKEN)
        assert made.status == 201
        sid = made.json()["id"]

        # DELETE is a write: the token, as for the others.
        assert c.request("DELETE", f"/silences/{sid}").status == 401
        assert c.request("DELETE", f"/silences/{sid}", token="wrong").status == 401
        for s in [*old, made.json()]:
            gone = c.request("DELETE", f"/silences/{s['id']}", token=API_TOKEN)
            assert gone.status == 200 and gone.json() == s
        assert c.get("/silences").json()["silences"] == []
        for sid_ in (str(sid), "abc", "%D9%A1", "0", "99999999999999999999"):
            reply = c.request("DELETE", f"/silences/{sid_}", token=API_TOKEN)
            assert reply.status == 404 and reply.json()["error"]["status"] == 404, sid_
    with Server(db, world.cfg, token=None) as server:
        assert Client(server.port, world.secrets).request("DELETE", "/silences/1").status == 403


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/alerts?limit=%C2%B2", "limit"),  # ²: str.isdigit() says yes, int() says no
        ("/alerts?limit=%D9%A1%D9%A2", "limit"),  # Arabic-Indic 12: int() takes it
        ("/alerts?limit=%2B5", "limit"),
        ("/alerts?limit=+5", "limit"),  # a form-encoded space
        ("/alerts?limit=%205", "limit"),
        ("/alerts?limit=5%20", "limit"),
        ("/alerts?limit=1_0", "limit"),
        ("/alerts?limit=", "limit"),
        ("/alerts?limit=99999999999999999999999", "limit"),
        ("/positions/{id}/history?limit=-1", "limit"),
        ("/positions/{id}/history?since=%D9%A1%D9%A2%D9%A3", "since"),
        ("/positions/{id}/history?since=1_000", "since"),
        ("/positions/{id}/history?since=%201000", "since"),
        ("/positions/{id}/history?since=1e3", "since"),
        ("/positions/{id}/history?since=inf", "since"),
        ("/positions/{id}/history?since=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-01-01", "since"),  # fullwidth 2026
        ("/positions/{id}/history?since=9999999999999999999999", "since"),
    ],
)
def test_integers_and_times_are_ascii_only(world: World, client: Client, path: str, name: str) -> None:
    reply = client.get(path.replace("{id}", key(world, world.risky)))
    assert reply.status == 400 and reply.json()["error"]["message"].startswith(f"{name}: "), reply.text


def test_no_parameter_makes_a_500(world: World, client: Client) -> None:
    nasty = ["", "%00", "%ff", "%ED%A0%80", "%C2%B2", "+5", "-1", "1e400", "nan", "2026-13-45", "0x", "x" * 5000]
    nasty += ["9" * 400, "%22%27%3B--", "1.5", "2026-01-01T00:00:00%2B99:00"]
    templates = [
        "/positions?account={v}",
        "/positions?level={v}",
        "/positions?chain={v}",
        "/positions?protocol={v}",
        "/positions/{v}",
        "/positions/{v}/history",
        "/positions/{id}/history?since={v}",
        "/positions/{id}/history?limit={v}",
        "/alerts?open={v}",
        "/alerts?limit={v}",
        "/alerts?position={v}",
        "/silences?{v}={v}",
    ]
    statuses = set()
    for template in templates:
        for v in nasty:
            if "/{v}" in template and not v:
                continue
            reply = client.get(template.replace("{id}", key(world, world.risky)).replace("{v}", v))
            assert reply.status < 500, (template, v, reply.text)
            statuses.add(reply.status)
    for v in [v for v in nasty if v]:
        for method, path in (("POST", f"/alerts/{v}/ack"), ("DELETE", f"/silences/{v}")):
            reply = client.request(method, path, token=API_TOKEN)
            assert reply.status == 404, (method, v)
    assert statuses == {200, 400, 404}


def test_openapi_describes_every_route(world: World, tmp_path: Path) -> None:
    app = make_app(Store(tmp_path / "o.db"), world.cfg, token=API_TOKEN, host="127.0.0.1", port=0)
    routed = {
        (r.resource.canonical, r.method.lower())
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    described = {(path, method) for path, ops in OPENAPI["paths"].items() for method in ops}
    assert routed == described
    for path, ops in OPENAPI["paths"].items():
        for method, op in ops.items():
            in_path = set(re.findall(r"\{(\w+)\}", path))
            assert {p["name"] for p in op["parameters"] if p["in"] == "path"} == in_path
            assert op["summary"] and op["responses"]
            if method != "get":
                assert op["security"] == [{"bearer": []}] and {"401", "403"} <= set(op["responses"])
    delete = OPENAPI["paths"]["/silences/{id}"]["delete"]
    assert {"200", "404"} <= set(delete["responses"]) and delete["parameters"][0]["schema"]["type"] == "integer"
    assert OPENAPI["paths"]["/alerts"]["get"]["parameters"][-1]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
    }
    post = OPENAPI["paths"]["/silences"]["post"]
    assert {"201", "400", "408", "413"} <= set(post["responses"])
    assert (
        "366 days" in post["requestBody"]["content"]["application/json"]["schema"]["properties"]["until"]["description"]
    )


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes the connection within `seconds` (anything it sends first is read and dropped)."""
    end = time.monotonic() + seconds
    try:
        while (left := end - time.monotonic()) > 0:
            if await asyncio.wait_for(reader.read(65536), left) == b"":
                return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return False


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    status = int(head.split(" ", 2)[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def _post_head(port: int, length: int, chunked: bool = False) -> bytes:
    size = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    return (
        f"POST /silences HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {API_TOKEN}\r\n"
        f"Content-Type: application/json\r\n{size}\r\n\r\n"
    ).encode()


def _get_health(port: int) -> tuple[int, float]:
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/health", headers={"Host": f"127.0.0.1:{port}"})
    status = conn.getresponse().status
    conn.close()
    return status, time.monotonic() - t0


def test_a_slow_header_attack_is_cut_off_while_health_answers(world: World) -> None:
    cfg = api_cfg(world, "header_timeout = 1\nmax_connections = 50\n")
    line = b"GET /health HTTP/1.1\r\nHost: x\r\n"

    async def slow(port: int) -> tuple[float, float]:
        """A byte a second until the server hangs up (at most 30 s); returns (opened, closed) times."""
        reader, writer = await _open(port)
        opened = time.monotonic()
        try:
            for i in range(30):
                writer.write(line[i : i + 1])
                if await _closed_within(reader, 1.0):
                    break
        except ConnectionError:
            pass
        closed = time.monotonic()
        writer.close()
        return opened, closed

    async def attack(port: int) -> tuple[list[tuple[float, float]], list[tuple[int, float]]]:
        start = time.monotonic()
        tasks = [asyncio.create_task(slow(port)) for _ in range(200)]
        answers = []
        while time.monotonic() - start < 2.5:  # during the attack, a GET /health every 0.25 s
            await asyncio.sleep(0.25)
            answers.append(await asyncio.to_thread(_get_health, port))
        return await asyncio.wait_for(asyncio.gather(*tasks), 40), answers

    with Server(world.db, cfg) as server:
        times, answers = asyncio.run(attack(server.port))
        assert _get_health(server.port)[0] == 200  # and after it
    held = sorted(closed - opened for opened, closed in times)
    print(f"slow connections held open: min {held[0]:.2f} s, median {held[100]:.2f} s, max {held[-1]:.2f} s")
    print(f"GET /health during the attack: {len(answers)} answers, slowest {max(t for _, t in answers):.3f} s")
    assert len(held) == 200 and held[-1] <= 1 + 2.0  # every one closed within 2 s of header_timeout
    assert held[-1] >= 0.9  # the survivors of the cap waited out the timeout: it is 1 s, not "at once"
    assert len(answers) >= 8 and all(status == 200 and t < 1.0 for status, t in answers)


@pytest.mark.parametrize("header_timeout", [1, 2])
def test_header_timeout_closes_slow_and_idle_keep_alive_connections(world: World, header_timeout: int) -> None:
    cfg = api_cfg(world, f"header_timeout = {header_timeout}\n")

    async def scenario(port: int) -> tuple[float, float, int]:
        async def partial() -> float:
            reader, writer = await _open(port)
            t0 = time.monotonic()
            writer.write(b"GET /hea")  # and nothing more
            assert await _closed_within(reader, header_timeout + 3)
            writer.close()
            return time.monotonic() - t0

        async def keep_alive() -> tuple[float, int]:
            reader, writer = await _open(port)
            writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            status, headers, _ = await _response(reader)
            assert headers.get("connection", "").lower() != "close"
            t0 = time.monotonic()  # idle between requests: the next headers are due within the timeout too
            assert await _closed_within(reader, header_timeout + 3)
            writer.close()
            return time.monotonic() - t0, status

        slow, (idle, status) = await asyncio.gather(partial(), keep_alive())
        return slow, idle, status

    with Server(world.db, cfg) as server:
        slow, idle, status = asyncio.run(scenario(server.port))
    print(f"header_timeout {header_timeout}: partial request closed after {slow:.2f} s, idle after {idle:.2f} s")
    assert status == 200
    assert header_timeout - 0.1 <= slow <= header_timeout + 1
    assert header_timeout - 0.1 <= idle <= header_timeout + 1


@pytest.mark.parametrize("body_timeout", [1, 2])
def test_body_timeout_answers_408_and_closes(world: World, body_timeout: int) -> None:
    cfg = api_cfg(world, f"body_timeout = {body_timeout}\n")

    async def scenario(port: int) -> tuple[float, int, dict[str, str], Any, bool]:
        reader, writer = await _open(port)
        writer.write(_post_head(port, 200) + b'{"position": "p", ')  # 18 of the 200 bytes promised
        t0 = time.monotonic()
        status, headers, body = await asyncio.wait_for(_response(reader), body_timeout + 5)
        elapsed = time.monotonic() - t0
        closed = await _closed_within(reader, 1.0)
        writer.close()
        return elapsed, status, headers, json.loads(body), closed

    with Server(world.db, cfg) as server:
        elapsed, status, headers, body, closed = asyncio.run(scenario(server.port))
        silences = Client(server.port, world.secrets).get("/silences").json()["silences"]
        assert [x for x in silences if x["position"] == "p"] == []  # the cut-off body stored nothing
    print(f"body_timeout {body_timeout}: 408 after {elapsed:.2f} s")
    assert status == 408 and body["error"]["status"] == 408
    assert body["error"]["message"] == f"body: not received within {body_timeout} s (api.body_timeout)"
    assert headers["connection"].lower() == "close" and closed
    assert body_timeout - 0.1 <= elapsed <= body_timeout + 1


def test_a_slow_body_in_time_is_taken_and_large_bodies_are_413(world: World) -> None:
    cfg = api_cfg(world, "header_timeout = 1\nbody_timeout = 3\n")
    payload = json.dumps({"position": "slow", "until": time.time() + 600}).encode()

    async def slow_body(port: int) -> tuple[int, Any]:
        # 2 s for the body: more than header_timeout, which stops counting once the headers are in.
        reader, writer = await _open(port)
        writer.write(_post_head(port, len(payload)))
        for i in range(4):
            writer.write(payload[i * len(payload) // 4 : (i + 1) * len(payload) // 4])
            await asyncio.sleep(0.5)
        status, _, body = await _response(reader)
        writer.close()
        return status, json.loads(body)

    async def large(port: int, chunked: bool) -> tuple[int, Any, float, bool]:
        reader, writer = await _open(port)
        t0 = time.monotonic()
        data = b'{"position": "' + b"x" * 70_000 + b'", "until": 1}'
        if chunked:
            writer.write(_post_head(port, 0, chunked=True) + f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")
        else:
            writer.write(_post_head(port, len(data)))  # the Content-Length alone is enough to refuse it
        status, _, body = await asyncio.wait_for(_response(reader), 5)
        elapsed = time.monotonic() - t0
        closed = await _closed_within(reader, 1.0)
        writer.close()
        return status, json.loads(body), elapsed, closed

    with Server(world.db, cfg) as server:
        status, made = asyncio.run(slow_body(server.port))
        assert status == 201 and made["position"] == "slow"
        for chunked in (False, True):
            status, body, elapsed, closed = asyncio.run(large(server.port, chunked))
            assert (
                status == 413 and body["error"]["message"].startswith("body: ") and "65536" in body["error"]["message"]
            )
            assert elapsed < 1 and closed
        c = Client(server.port, world.secrets)
        assert c.request("DELETE", f"/silences/{made['id']}", token=API_TOKEN).status == 200


def test_max_connections_closes_the_oldest_idle_one(world: World) -> None:
    async def scenario(port: int) -> None:
        payload = json.dumps({"position": "busy", "until": time.time() + 600}).encode()
        busy_r, busy_w = await _open(port)
        busy_w.write(_post_head(port, len(payload)) + payload[:10])  # a request in progress: never the one to go
        await asyncio.sleep(0.1)
        idle = []
        for _ in range(4):
            idle.append(await _open(port))
            await asyncio.sleep(0.05)
        assert not await _closed_within(idle[0][0], 0.2)  # five open: at the cap, none closed
        newcomer = await _open(port)
        assert await _closed_within(idle[0][0], 1.0)  # the sixth: the oldest idle one makes room
        for r, _ in idle[1:]:
            assert not await _closed_within(r, 0.1)
        assert not await _closed_within(busy_r, 0.1)
        status, _ = await asyncio.to_thread(_get_health, port)  # a request that arrives is served
        assert status == 200 and await _closed_within(idle[1][0], 0.5)
        busy_w.write(payload[10:])
        status, _, body = await _response(busy_r)
        assert status == 201 and json.loads(body)["position"] == "busy"
        for _, w in [*idle, newcomer, (busy_r, busy_w)]:
            w.close()

    async def all_busy(port: int) -> bool:
        payload = json.dumps({"position": "busy", "until": time.time() + 600}).encode()
        conns = []
        for _ in range(2):
            r, w = await _open(port)
            w.write(_post_head(port, len(payload)) + payload[:10])
            conns.append((r, w))
        await asyncio.sleep(0.2)
        r, w = await _open(port)
        w.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        refused = await _closed_within(r, 1.0)  # both slots serve a request: the newcomer cannot come in
        for r_, w_ in conns:
            w_.write(payload[10:])
            assert (await _response(r_))[0] == 201
            w_.close()
        w.close()
        return refused

    with Server(world.db, api_cfg(world, "max_connections = 5\n")) as server:
        asyncio.run(scenario(server.port))
    with Server(world.db, api_cfg(world, "max_connections = 2\n")) as server:
        assert asyncio.run(all_busy(server.port))
        ids = [s["id"] for s in Client(server.port, world.secrets).get("/silences").json()["silences"]]
        for sid in ids:
            Client(server.port, world.secrets).request("DELETE", f"/silences/{sid}", token=API_TOKEN)


def test_a_chain_not_read_for_stale_after_is_degraded_and_its_positions_unknown(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon reads once and then stops (dead, hung): nothing new is ever written. The API alone must say so.
    monkeypatch.setenv("MW_TEST_TG_TOKEN", BOT_TOKEN)
    db = tmp_path / "stale.db"
    cfg = api_cfg(world, db=db, stale_after=2)
    world.market.set_price("WETH", 1_400 * 10**8)
    clock = Clock()
    clock.t = time.time()
    d = make_daemon(cfg, db, clock)
    asyncio.run(d.check_chain("local"))
    read_at = clock.t
    risky, safe = key(world, world.risky), key(world, world.safe)
    with Server(db, cfg) as server:
        c = Client(server.port, world.secrets)
        fresh = c.get("/health").json()
        assert fresh["status"] == "ok" and fresh["chains"]["local"]["stale"] is False
        assert [p["id"] for p in c.get("/positions?level=liquidatable").json()["positions"]] == [risky]
        while (health := c.get("/health").json())["status"] == "ok":
            assert time.time() - read_at < 5
            time.sleep(0.05)
        seen = time.time() - read_at
        print(f"stale_after 2 s: /health degraded {seen:.2f} s after the last good read")
        assert 2.0 <= seen <= 2.5
        local = health["chains"]["local"]
        assert local["degraded"] is True and local["stale"] is True and local["stale_after"] == 2
        assert re.fullmatch(r"no good read for [0-9]+ s \(stale_after 2 s\)", local["reason"])
        docs = c.get("/positions").json()["positions"]
        assert {(p["id"], p["level"], p["stale"]) for p in docs} == {(risky, "unknown", True), (safe, "unknown", True)}
        assert all(p["stale_reason"].startswith("no good read for ") for p in docs)
        assert docs[0]["health_raw"] is not None  # the last reading stays for reference
        # The level filter agrees with the documents: never "ok" nor "liquidatable" while unknown.
        for level in ("ok", "liquidatable", "warn", "critical"):
            assert c.get(f"/positions?level={level}").json()["positions"] == [], level
        assert len(c.get("/positions?level=unknown").json()["positions"]) == 2
        one = c.get(f"/positions/{risky}").json()
        assert one["level"] == "unknown" and one["stale"] is True
        families = {f.name: f for f in text_string_to_metric_families(c.get("/metrics").text)}
        assert families["margin_watcher_position_health"].samples == []
        assert [s.value for s in families["margin_watcher_chain_degraded"].samples] == [1.0]

        clock.t = time.time()
        asyncio.run(d.check_chain("local"))  # the daemon reads again: fresh, and the stored levels are true again
        assert c.get("/health").json()["status"] == "ok"
        [doc] = c.get("/positions?level=liquidatable").json()["positions"]
        assert doc["id"] == risky and "stale" not in doc


def test_a_venue_or_chain_never_read_goes_stale_too(world: World, tmp_path: Path) -> None:
    db = tmp_path / "venue.db"
    venue = '[venues.hl]\nprotocol = "hyperliquid"\nbase_url = "http://127.0.0.1:9"\ninterval = 0.5\nstale_after = 1\n'
    text = world_config(world.anvil, world.market, [world.safe], world.telegram, db, stale_after=1.5)
    text = text.replace("\n[api]\n", f"\n{venue}\n[api]\n")
    cfg = parse_config(tomllib.loads(text))
    assert cfg.venues["hl"].watchdog_after() == 1
    now = time.time()
    pos = "hyperliquid:hl:" + world.safe
    doc = {"id": pos, "level": "ok", "health_raw": None, "updated_at": now}
    # The row the daemon writes after a venue read (see Daemon.process).
    row = {"position": pos, "protocol": "hyperliquid", "chain": "hl", "account": world.safe, "label": "x"}
    row |= {"level": "ok", "health": None, "doc": json.dumps(doc), "updated_at": now, "block": 0}
    Store(db).commit(
        now=now,
        states={},
        alerts=[],
        channels=[],
        chain_status={"hl": {"degraded": 0, "since": now, "reason": "", "last_ok": now}},
        positions=[row],
    )
    with Server(db, cfg) as server:
        c = Client(server.port, world.secrets)
        first = c.get("/health").json()
        # The chain has no row yet: not ok, not degraded either until its stale_after has passed since start.
        assert first["status"] == "starting" and first["chains"]["local"]["reason"] == "no read yet"
        assert first["chains"]["hl"]["degraded"] is False
        assert c.get("/positions?level=ok").json()["positions"][0]["id"] == pos
        time.sleep(1.6)
        later = c.get("/health").json()
        assert later["status"] == "degraded"
        assert re.fullmatch(r"no good read for [0-9]+ s \(stale_after 1 s\)", later["chains"]["hl"]["reason"])
        assert re.fullmatch(r"no good read for [0-9]+ s \(stale_after 1.5 s\)", later["chains"]["local"]["reason"])
        [p] = c.get("/positions").json()["positions"]
        assert p["level"] == "unknown" and p["stale"] is True
        assert c.get("/positions?level=ok").json()["positions"] == []


def test_health_reports_the_daemons_storage_failures(world: World) -> None:
    live: dict[str, Any] = {}
    with Server(world.db, world.cfg, live=live) as server:
        c = Client(server.port, world.secrets)
        h = c.get("/health").json()
        assert h["status"] == "ok" and h["storage"] == {"ok": True, "error": "", "since": None, "since_iso": None}
        since = float(int(time.time()))
        live["storage"] = {"ok": False, "error": "database is locked", "since": since}  # as the daemon sets it
        h = c.get("/health").json()
        assert h["status"] == "degraded" and h["chains"]["local"]["degraded"] is False
        assert h["storage"] == {
            "ok": False,
            "error": "database is locked",
            "since": since,
            "since_iso": datetime.fromtimestamp(since, UTC).isoformat(),
        }
        live["storage"] = {"ok": True, "error": "", "since": since + 5}
        assert c.get("/health").json()["status"] == "ok"
    with Server(world.db, world.cfg) as server:
        assert "storage" not in Client(server.port, world.secrets).get("/health").json()  # no daemon here
