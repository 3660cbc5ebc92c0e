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

from tests.loopback import free_port
from tests.telegram_server import TelegramStandIn
from tests.test_daemon import Clock, config_text, make_daemon, step
from watcher.api import make_app, serve
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
