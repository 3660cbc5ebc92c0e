"""The local API's hardening against a real server: URL-safe ids, silences, strict parameters, slow clients and
staleness, over the same store as tests/test_api.py (every request still checked for secrets by `Client`)."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.test_api import (
    API_TOKEN,
    BOT_TOKEN,
    Client,
    Server,
    World,
    client,
    key,
    world,
    world_config,
)
from tests.test_daemon import Clock, make_daemon
from watcher.api import OPENAPI, make_app
from watcher.config import Config, parse_config
from watcher.store import Store

__all__ = ["client", "world"]  # the fixtures shared with test_api (module-scoped: this module fills its own store)


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
