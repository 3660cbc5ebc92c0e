"""Faults of an off-chain perps venue (Hyperliquid) under the real `watcher run --config` and `watcher check --json`.

Each test writes a config file, runs the watcher as a subprocess against Hyperliquid stand-ins on 127.0.0.1 (each in
its own thread and event loop), breaks the venue the ways a venue breaks (stalls, trickles, floods, 503s, garbage,
stale state), and asserts what the user sees at the Telegram stand-in and in the HTTP API, and how fast.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from tests import run_harness
from tests.configs import write_toml
from tests.hyperliquid_server import HyperliquidStandIn
from tests.loopback import free_port
from tests.processes import TOKEN_ENV, CheckRun, WatcherProcess, check_json, wait_for
from tests.run_harness import RunSetup
from tests.telegram_server import TelegramStandIn
from tests.test_hyperliquid import ACCOUNTS, CROSS_LIQ, META, world

# The harness's fixtures, found by pytest under these names.
telegram_standin = run_harness.telegram_standin
run_market = run_harness.run_market
run_setup = run_harness.run_setup

BTC, ETH = Fraction(95_000), Fraction(3_100)  #: every account healthy (health 7.5 and up)
LIQ_BTC = CROSS_LIQ - 1  #: one dollar under the cross account's liquidation price: cross-btc is liquidatable
INTERVAL = 1.0
TIMEOUT = 2.0
#: Delivery, scheduling and a loaded 2-core machine.
SLACK = 2.0
#: A check starts within one interval of the fault and fails within its timeout; then the message goes out.
DEGRADED_BOUND = TIMEOUT + INTERVAL + SLACK
#: `watcher check` fails within its timeout, plus the interpreter's start (imports take 1-2 s) on a busy machine.
CHECK_BOUND = TIMEOUT + 5.0
#: Peak-RSS growth the daemon may show while a venue floods it (the answer cap is 8 MB, four requests per check).
RSS_BOUND_MIB = 100


# --- a venue in its own thread ----------------------------------------------------------------------------------


class Venue:
    """A HyperliquidStandIn in its own thread and event loop, as a venue is to the daemon: another process's server."""

    def __init__(self, btc: Fraction = BTC) -> None:
        mids, states = world(btc, ETH)
        self.server = HyperliquidStandIn(copy.deepcopy(META), mids, states)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hyperliquid-stand-in", daemon=True)

    def start(self) -> Venue:
        """Listen on a free port of 127.0.0.1; returns self."""
        self._thread.start()
        self._run(self.server.__aenter__())
        return self

    def stop(self) -> None:
        """End held answers, stop the server and the thread (bounded: the stand-in's faults end on stop)."""
        if self._thread.is_alive():
            self._run(self.server.__aexit__(None, None, None), 20)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _run(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _apply(self, change: Callable[[HyperliquidStandIn], None]) -> None:
        """Change the served world on the server's loop, never in the middle of an answer."""

        async def apply() -> None:
            change(self.server)

        self._run(apply())

    @property
    def url(self) -> str:
        """The base_url to configure."""
        return self.server.url

    @property
    def fault(self) -> str | None:
        """The fault the stand-in answers with now (None: healthy)."""
        return self.server.fault

    @fault.setter
    def fault(self, fault: str | None) -> None:
        self.server.fault = fault

    def move(self, btc: Fraction) -> None:
        """Move BTC's mark to `btc`, account values moving by PnL as the venue would."""
        mids, states = world(btc, ETH)

        def change(s: HyperliquidStandIn) -> None:
            stamps = {u: st["time"] for u, st in s.states.items() if "time" in st}
            s.mids.update(mids)
            s.states.update({u: st | ({"time": stamps[u]} if u in stamps else {}) for u, st in states.items()})

        self._apply(change)

    def stamp(self, age: float) -> None:
        """Serve clearinghouseState computed `age` seconds ago (its `time` field, in milliseconds)."""
        ms = int((time.time() - age) * 1000)

        def change(s: HyperliquidStandIn) -> None:
            s.states.update({u: st | {"time": ms} for u, st in s.states.items()})

        self._apply(change)

    def pad_meta(self, size: int) -> None:
        """Make every metaAndAssetCtxs answer about `size` bytes longer: a valid answer, only large."""
        self._apply(lambda s: s.meta.update(pad="x" * size))


@pytest.fixture
def venues() -> Iterator[Callable[[], Venue]]:
    """Start Hyperliquid stand-ins on demand; every one is stopped after the test."""
    started: list[Venue] = []

    def make() -> Venue:
        v = Venue().start()
        started.append(v)
        return v

    yield make
    for v in started:
        v.stop()


# --- configs and what the user sees -----------------------------------------------------------------------------


def venue_keys(venue: Venue, **keys: Any) -> dict[str, Any]:
    """One [venues.<name>] table: Hyperliquid at the stand-in, interval and timeout of this suite unless given."""
    return {"protocol": "hyperliquid", "base_url": venue.url, "interval": INTERVAL, "timeout": TIMEOUT} | keys


def hl_accounts() -> list[dict[str, str]]:
    """The three stand-in accounts (cross-btc, iso-eth, tiered-btc)."""
    return [{"address": a.address, "label": a.label} for a in ACCOUNTS]


def notify(telegram: TelegramStandIn) -> dict[str, Any]:
    """[notify] at the Telegram stand-in, no pacing, quick retries."""
    return {
        "retry_initial": 0.2,
        "retry_max": 1.0,
        "telegram": {
            "token": {"env": TOKEN_ENV},
            "chat_id": "42",
            "base_url": telegram.base_url,
            "min_interval": 0.0,
        },
    }


def write_config(tmp_path: Path, telegram: TelegramStandIn, venue_tables: dict[str, dict[str, Any]]) -> Path:
    """A config with only venues (no chains), their accounts from [[accounts]]."""
    return write_toml(
        tmp_path / "config.toml",
        {
            "venues": venue_tables,
            "accounts": hl_accounts(),
            # cross-btc falls from health 16.6 to under 1: "falling fast" too, unless the drop bound is above that
            "alerts": {"confirm_warn": 1, "falling_drop": 1000, "repeat_liquidatable": 3600.0},
            "notify": notify(telegram),
            "storage": {"path": str(tmp_path / "watcher.db")},
            "api": {"port": free_port()},
        },
    )


def messages(telegram: TelegramStandIn, name: str) -> list[tuple[str, float, str]]:
    """(kind, arrival, text) of each message about venue `name`: "degraded", "recovered" or a position's level."""
    out = []
    for r in telegram.received:
        first = r.text.splitlines()[0]
        if f"Watcher degraded on {name}:" in first:
            out.append(("degraded", r.at, r.text))
        elif f"Watcher reads {name} again" in first:
            out.append(("recovered", r.at, r.text))
        elif first.endswith(f" · hyperliquid on {name}"):
            out.append((first.split(" · ")[0].split(" ", 1)[1], r.at, r.text))
    return out


def first_of(telegram: TelegramStandIn, name: str, kind: str) -> tuple[str, float, str] | None:
    """The first message of `kind` about venue `name`, if any."""
    return next((m for m in messages(telegram, name) if m[0] == kind), None)


def text_of(telegram: TelegramStandIn, name: str, kind: str) -> str:
    """The text of the first `kind` message about `name`; fails the test if there is none."""
    msg = first_of(telegram, name, kind)
    assert msg is not None, f"no {kind} message for {name}: {[m[0] for m in messages(telegram, name)]}"
    return msg[2]


def arrival(telegram: TelegramStandIn, name: str, kind: str, since: float, timeout: float) -> float:
    """Seconds from `since` to the first `kind` message about `name`; fails the test after `timeout` seconds."""
    msg = wait_for(lambda: first_of(telegram, name, kind), timeout, what=f"a {kind} message for {name}")
    return msg[1] - since


def levels(w: WatcherProcess, name: str) -> dict[str, str]:
    """Label -> level of the venue's positions in GET /positions."""
    return {p["label"]: p["level"] for p in w.get("/positions")["positions"] if p["chain"] == name}


def vm_hwm_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def start(config: Path, *names: str) -> WatcherProcess:
    """`watcher run` on `config`, once each named venue has had a first good check of all three accounts."""
    w = WatcherProcess(config)
    try:
        w.start()
        for name in names:
            wait_for(
                lambda n=name: w.logs("check", chain=n, positions=3, unknown=0), 30, what=f"a good check of {name}"
            )
    except BaseException:
        w.stop()
        raise
    return w


def assert_healthy(w: WatcherProcess, telegram: TelegramStandIn, *names: str) -> None:
    """Every named venue read, its three positions ok, and nothing sent: the baseline a fault is measured from."""
    health = w.get("/health")
    for name in names:
        assert health["chains"][name]["degraded"] is False, health["chains"][name]
        assert levels(w, name) == {"cross-btc": "ok", "iso-eth": "ok", "tiered-btc": "ok"}
    assert telegram.received == [], [r.text for r in telegram.received]


# --- 1. each fault under `watcher run` and `watcher check` ------------------------------------------------------

#: What the degraded message says for each fault: the user is told why, not only that.
FAULTS = {
    "stall": f"no whole answer within {TIMEOUT:g} s (timeout)",
    "trickle": f"no whole answer within {TIMEOUT:g} s (timeout)",
    "oversize": "the answer passed 8,000,000 bytes (the configured max_response_bytes)",
    "down": "HTTP 503",
    "badjson": "malformed JSON",
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_broken_venue_is_degraded_unknown_and_loses_no_alert(
    venues: Callable[[], Venue], telegram_standin: TelegramStandIn, tmp_path: Path, fault: str
) -> None:
    """A stalled, trickling (1 B/s), 20 MB, 503 or garbage venue: degraded within timeout + interval + 2 s.

    While broken: /health degraded, its positions unknown (never ok), `watcher check --json` exits 3 within timeout +
    5 s with its accounts unknown; a flood grows the daemon's peak RSS by under 100 MiB. Once it answers again: one
    recovered message within the same bound, positions read, and the liquidation that happened during the fault
    alerted then.
    """
    tg = telegram_standin
    hl = venues()
    hl.server.trickle_every = 1.0
    hl.server.oversize_bytes = 20_000_000
    cfg = write_config(tmp_path, tg, {"hl": venue_keys(hl)})
    with start(cfg, "hl") as w:
        assert_healthy(w, tg, "hl")
        rss_before = vm_hwm_kib(w.pid)

        hl.fault = fault
        broke = time.monotonic()
        to_degraded = arrival(tg, "hl", "degraded", broke, DEGRADED_BOUND + 15)
        text = text_of(tg, "hl", "degraded")
        print(f"{fault}: degraded message {to_degraded:.2f} s after the fault (bound {DEGRADED_BOUND:g} s)")
        print(f"{fault}: {text.splitlines()[1][:160]}")

        # BTC falls through the cross account's liquidation price while the venue cannot be read
        hl.move(LIQ_BTC)
        with ThreadPoolExecutor(1) as pool:
            check = pool.submit(check_json, cfg, CHECK_BOUND + 30)
            seen: set[str] = set()
            end = time.monotonic() + 3 * INTERVAL  # a few failed checks, and the watchdog's ticks, on top of the first
            while time.monotonic() < end:
                health = w.get("/health")
                assert health["status"] == "degraded" and health["chains"]["hl"]["degraded"] is True, health
                seen |= set(levels(w, "hl").values())
                time.sleep(0.2)
            run: CheckRun = check.result()
        rss_growth = (vm_hwm_kib(w.pid) - rss_before) / 1024
        print(f"{fault}: levels in /positions while broken: {sorted(seen)}; peak RSS grew {rss_growth:.1f} MiB")
        print(f"{fault}: watcher check --json exited {run.code} after {run.seconds:.2f} s (bound {CHECK_BOUND:g} s)")
        during = [m[0] for m in messages(tg, "hl")]

        hl.fault = None
        cleared = time.monotonic()
        to_recovered = arrival(tg, "hl", "recovered", cleared, DEGRADED_BOUND + 15)
        to_liquidatable = arrival(tg, "hl", "LIQUIDATABLE", cleared, DEGRADED_BOUND + 15)
        print(f"{fault}: recovered {to_recovered:.2f} s, LIQUIDATABLE {to_liquidatable:.2f} s after the fault cleared")
        time.sleep(3 * INTERVAL)  # a duplicate would come now
        after = levels(w, "hl")
        kinds = [m[0] for m in messages(tg, "hl")]
        final = w.get("/health")

    assert FAULTS[fault] in text, text
    assert "UNKNOWN, not healthy" in text, text
    assert to_degraded <= DEGRADED_BOUND, f"degraded {to_degraded:.2f} s after the fault (bound {DEGRADED_BOUND})"
    assert seen == {"unknown"}, f"/positions levels while the venue was broken: {seen}"
    assert during == ["degraded"], f"messages while broken: {during} (want only the degraded one)"
    assert rss_growth < RSS_BOUND_MIB, f"peak RSS grew {rss_growth:.1f} MiB (bound {RSS_BOUND_MIB})"

    assert run.code == 3, (run.code, run.stderr[-500:])
    assert run.seconds <= CHECK_BOUND, f"watcher check took {run.seconds:.2f} s (bound {CHECK_BOUND})"
    assert not [p for p in run.doc["positions"] if p["chain"] == "hl"], run.doc["positions"]
    unknown = {a.lower() for u in run.doc["unknown"] if u["chain"] == "hl" for a in u["accounts"]}
    assert unknown == {a.address.lower() for a in ACCOUNTS}, run.doc["unknown"]
    assert all(FAULTS[fault] in u["reason"] for u in run.doc["unknown"]), run.doc["unknown"]

    assert to_recovered <= DEGRADED_BOUND, f"recovered {to_recovered:.2f} s after the fault cleared"
    assert to_liquidatable <= DEGRADED_BOUND, f"LIQUIDATABLE {to_liquidatable:.2f} s after the fault cleared"
    assert sorted(kinds) == sorted(["degraded", "recovered", "LIQUIDATABLE"]), kinds
    assert kinds[0] == "degraded", kinds
    liquidatable = text_of(tg, "hl", "LIQUIDATABLE")
    assert " · cross-btc · " in liquidatable.splitlines()[0], liquidatable
    assert after == {"cross-btc": "liquidatable", "iso-eth": "ok", "tiered-btc": "ok"}, after
    assert final["chains"]["hl"]["degraded"] is False, final["chains"]["hl"]


# --- 2. a slow venue delays nothing else -------------------------------------------------------------------------


def check_starts(w: WatcherProcess, source: str, since: float, until: float) -> list[float]:
    """When (test's monotonic clock) each check of `source` was logged within [since, until]."""
    return [e["_at"] for e in w.logs("check", chain=source) if since <= e["_at"] <= until]


def cadence_problems(starts: list[float], since: float, until: float, interval: float, what: str) -> list[str]:
    """Too few checks in the window, or a gap over two intervals + 0.5 s (the window's end counts as a check)."""
    gaps = [b - a for a, b in itertools.pairwise([since, *starts, until])]
    print(f"{what}: {len(starts)} checks in {until - since:.1f} s, the longest gap {max(gaps):.2f} s")
    problems = []
    if len(starts) < (until - since) / (2 * interval):
        problems.append(f"{what}: {len(starts)} checks in {until - since:.1f} s (interval {interval} s)")
    if max(gaps) > 2 * interval + 0.5:
        problems.append(f"{what}: a {max(gaps):.2f} s gap between checks (bound {2 * interval + 0.5} s)")
    return problems


def test_a_stalled_venue_delays_no_chain_and_no_other_venue(run_setup: RunSetup, venues: Callable[[], Venue]) -> None:
    """One venue stalls (timeout 6 s) for 10 s: the chain and the other venue keep their 0.5 s cadence.

    Bound: no gap between checks of either over 2 intervals + 0.5 s = 1.5 s, and a liquidation on the healthy venue
    during the stall alerted within interval + 2 s = 2.5 s of its price move.
    """
    s = run_setup
    tg = s.telegram
    slow, fast = venues(), venues()
    interval, stall = 0.5, 10.0
    tables = {
        "slow": venue_keys(slow, interval=interval, timeout=6.0, accounts=hl_accounts()),
        "fast": venue_keys(fast, interval=interval, accounts=hl_accounts()),
    }
    cfg = s.write_config(
        {"venues": tables, "notify": {"retry_initial": 0.2, "retry_max": 1.0}, "alerts": {"falling_drop": 1000}},
        interval=interval,
    )
    with start(cfg, "slow", "fast") as w:
        wait_for(lambda: w.logs("check", chain="local", unknown=0), 30, what="a good check of the chain")
        assert_healthy(w, tg, "slow", "fast")

        slow.fault = "stall"
        t0 = time.monotonic()
        time.sleep(stall / 2)
        fast.move(LIQ_BTC)
        moved = time.monotonic()
        to_liquidatable = arrival(tg, "fast", "LIQUIDATABLE", moved, 15)
        time.sleep(max(0.0, t0 + stall - time.monotonic()))
        t1 = time.monotonic()
        slow.fault = None
        wait_for(lambda: first_of(tg, "slow", "recovered"), DEGRADED_BOUND + 10, what="the slow venue to recover")
        slow_degraded = first_of(tg, "slow", "degraded")
        assert slow_degraded is not None, "the stalled venue was never reported degraded"
        fast_kinds = [m[0] for m in messages(tg, "fast")]
        slow_checks = len(check_starts(w, "slow", t0, t1))

    print(f"fast venue: LIQUIDATABLE {to_liquidatable:.2f} s after its price moved (bound {interval + SLACK:g} s)")
    print(f"slow venue: {slow_checks} checks in the {stall:g} s stall; degraded after {slow_degraded[1] - t0:.2f} s")
    problems = cadence_problems(check_starts(w, "fast", t0, t1), t0, t1, interval, "fast venue")
    problems += cadence_problems(check_starts(w, "local", t0, t1), t0, t1, interval, "chain local")
    if to_liquidatable > interval + SLACK:
        problems.append(f"the fast venue's liquidation was alerted {to_liquidatable:.2f} s after its move")
    if fast_kinds != ["LIQUIDATABLE"]:
        problems.append(f"messages about the fast venue: {fast_kinds} (want one LIQUIDATABLE)")
    assert not problems, problems


# --- 3. the config's keys, through the config file --------------------------------------------------------------


def test_venue_timeout_sets_how_soon_a_stall_is_degraded(
    venues: Callable[[], Venue], telegram_standin: TelegramStandIn, tmp_path: Path
) -> None:
    """Two venues stall together: timeout 1 s is degraded within 1 + interval + 2 s = 4 s, timeout 6 s not before 6 s.

    No answer can be given up on before its timeout, and the watchdog (3 intervals + timeout = 9 s) is later still.
    """
    tg = telegram_standin
    short, long_ = venues(), venues()
    cfg = write_config(tmp_path, tg, {"short": venue_keys(short, timeout=1.0), "long": venue_keys(long_, timeout=6.0)})
    with start(cfg, "short", "long") as w:
        assert_healthy(w, tg, "short", "long")
        short.fault = long_.fault = "stall"
        t0 = time.monotonic()
        to_short = arrival(tg, "short", "degraded", t0, 20)
        to_long = arrival(tg, "long", "degraded", t0, 20)
        long_text = text_of(tg, "long", "degraded")
        short.fault = long_.fault = None
    print(f"timeout 1 s: degraded after {to_short:.2f} s (bound {1 + INTERVAL + SLACK:g} s)")
    print(f"timeout 6 s: degraded after {to_long:.2f} s (not before 6 s, bound {6 + INTERVAL + SLACK:g} s)")
    assert to_short <= 1 + INTERVAL + SLACK, to_short
    assert 6.0 - 0.2 <= to_long <= 6 + INTERVAL + SLACK, to_long  # 0.2 s: the client's clock starts at its send
    assert "no whole answer within 6 s (timeout)" in long_text, long_text


def test_venue_max_response_bytes_refuses_or_reads_a_large_answer(
    venues: Callable[[], Venue], telegram_standin: TelegramStandIn, tmp_path: Path
) -> None:
    """A valid 400 kB metaAndAssetCtxs: refused at max_response_bytes 100000 (degraded, unknown), read at 1000000."""
    tg = telegram_standin
    small, large = venues(), venues()
    for v in (small, large):
        v.pad_meta(400_000)
    cfg = write_config(
        tmp_path,
        tg,
        {
            "small": venue_keys(small, max_response_bytes=100_000),
            "large": venue_keys(large, max_response_bytes=1_000_000),
        },
    )
    t0 = time.monotonic()
    with start(cfg, "large") as w:
        to_degraded = arrival(tg, "small", "degraded", t0, 30)
        text = text_of(tg, "small", "degraded")
        time.sleep(2 * INTERVAL)  # more checks of both: the refusal holds, the read holds
        health = w.get("/health")["chains"]
        small_levels, large_levels = levels(w, "small"), levels(w, "large")
        kinds = {name: [m[0] for m in messages(tg, name)] for name in ("small", "large")}
    print(f"max_response_bytes 100000: degraded {to_degraded:.2f} s after start: {text.splitlines()[1][:160]}")
    print(f"max_response_bytes 1000000: {large_levels}")
    assert "the answer passed 100,000 bytes (the configured max_response_bytes)" in text, text
    assert health["small"]["degraded"] is True and health["large"]["degraded"] is False, health
    assert "ok" not in small_levels.values(), small_levels
    assert large_levels == {"cross-btc": "ok", "iso-eth": "ok", "tiered-btc": "ok"}, large_levels
    assert kinds == {"small": ["degraded"], "large": []}, kinds


def test_venue_stale_after_degrades_a_stall_before_its_timeout(
    venues: Callable[[], Venue], telegram_standin: TelegramStandIn, tmp_path: Path
) -> None:
    """Stall with timeout 10 s: stale_after 2 is degraded within 2 + 2 s (the watchdog), stale_after 20 not in 6 s."""
    tg = telegram_standin
    eager, lax = venues(), venues()
    interval = 0.5  # a good read every 0.5 s: stale_after 2 leaves room for a slow check on a busy machine
    cfg = write_config(
        tmp_path,
        tg,
        {
            "eager": venue_keys(eager, interval=interval, timeout=10.0, stale_after=2.0),
            "lax": venue_keys(lax, interval=interval, timeout=10.0, stale_after=20.0),
        },
    )
    with start(cfg, "eager", "lax") as w:
        assert_healthy(w, tg, "eager", "lax")
        eager.fault = lax.fault = "stall"
        t0 = time.monotonic()
        to_eager = arrival(tg, "eager", "degraded", t0, 15)
        text = text_of(tg, "eager", "degraded")
        eager_levels = levels(w, "eager")
        time.sleep(max(0.0, t0 + 6.0 - time.monotonic()))
        lax_kinds = [m[0] for m in messages(tg, "lax")]
        health = w.get("/health")["chains"]
        eager.fault = lax.fault = None
        to_recovered = arrival(tg, "eager", "recovered", t0 + 6.0, DEGRADED_BOUND + 10)
    print(f"stale_after 2: degraded {to_eager:.2f} s into the stall (bound {2 + SLACK:g} s, timeout 10 s)")
    print(f"stale_after 2: {text.splitlines()[1][:160]}; recovered {to_recovered:.2f} s after the stall ended")
    print(f"stale_after 20: messages in the first 6 s: {lax_kinds}")
    assert to_eager <= 2.0 + SLACK, to_eager
    assert "stale_after 2 s" in text, text
    assert set(eager_levels.values()) == {"unknown"}, eager_levels
    assert health["eager"]["degraded"] is True, health["eager"]
    assert lax_kinds == [] and health["lax"]["degraded"] is False, (lax_kinds, health["lax"])


def test_venue_max_age_makes_old_state_unknown(
    venues: Callable[[], Venue], telegram_standin: TelegramStandIn, tmp_path: Path
) -> None:
    """The venue starts serving state 300 s old: max_age 60 is degraded within interval + 2 s, max_age 600 reads on."""
    tg = telegram_standin
    strict, loose = venues(), venues()
    for v in (strict, loose):
        v.stamp(0.0)
    cfg = write_config(
        tmp_path, tg, {"strict": venue_keys(strict, max_age=60.0), "loose": venue_keys(loose, max_age=600.0)}
    )
    with start(cfg, "strict", "loose") as w:
        assert_healthy(w, tg, "strict", "loose")
        for v in (strict, loose):
            v.stamp(300.0)
        t0 = time.monotonic()
        to_degraded = arrival(tg, "strict", "degraded", t0, 20)
        text = text_of(tg, "strict", "degraded")
        time.sleep(2 * INTERVAL)
        strict_levels, loose_levels = levels(w, "strict"), levels(w, "loose")
        for v in (strict, loose):
            v.stamp(0.0)
        to_recovered = arrival(tg, "strict", "recovered", time.monotonic(), DEGRADED_BOUND + 10)
        loose_kinds = [m[0] for m in messages(tg, "loose")]
    print(f"max_age 60: degraded {to_degraded:.2f} s after the state went 300 s old: {text.splitlines()[1][:120]}")
    print(f"max_age 60: recovered {to_recovered:.2f} s after fresh state; max_age 600: {loose_levels}")
    assert to_degraded <= INTERVAL + SLACK, to_degraded
    assert "s old (max 60 s): its state is stale" in text, text
    assert set(strict_levels.values()) == {"unknown"}, strict_levels
    assert loose_levels == {"cross-btc": "ok", "iso-eth": "ok", "tiered-btc": "ok"}, loose_levels
    assert loose_kinds == [], loose_kinds


# --- positions with a market id (a dYdX subaccount) -------------------------------------------------------------


class DydxVenue:
    """The dYdX indexer stand-in in its own thread and event loop."""

    def __init__(self) -> None:
        from tests.dydx_server import DydxIndexerStandIn
        from tests.test_dydx_v4 import _markets, _subaccounts

        self.server = DydxIndexerStandIn(_markets(), _subaccounts())
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dydx-stand-in", daemon=True)

    def start(self) -> DydxVenue:
        """Listen on a free port of 127.0.0.1; returns self."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.__aenter__(), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Stop the server and its thread."""
        asyncio.run_coroutine_threadsafe(self.server.__aexit__(None, None, None), self._loop).result(20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_a_broken_dydx_indexer_makes_its_subaccount_positions_unknown(
    run_setup: RunSetup, telegram_standin: TelegramStandIn
) -> None:
    """dYdX positions carry their subaccount in their id (…:sub0): when the indexer fails, /positions shows every one
    of them unknown as soon as the degraded message is out, never the last "ok"."""
    from tests.test_dydx_v4 import A, B

    dx = DydxVenue().start()
    try:
        cfg = write_config(
            run_setup.tmp_path,
            telegram_standin,
            {
                "dx": {
                    "protocol": "dydx_v4",
                    "base_url": dx.server.url,
                    "interval": INTERVAL,
                    "timeout": TIMEOUT,
                    "accounts": [
                        {"address": A, "label": "alice", "subaccounts": [0, 128]},
                        {"address": B, "label": "bob"},
                    ],
                }
            },
        )
        w = run_setup.start(cfg)
        wait_for(lambda: len(w.get("/positions")["positions"]) == 3, 30, what="the subaccounts read")
        ids = sorted(p["id"] for p in w.get("/positions")["positions"])
        assert all(i.rsplit(":", 1)[-1].startswith("sub") for i in ids), ids
        assert {p["level"] for p in w.get("/positions")["positions"]} == {"ok"}
        dx.server.fault = "http500"
        t0 = time.monotonic()
        wait_for(lambda: [m for m in messages(telegram_standin, "dx") if m[0] == "degraded"], DEGRADED_BOUND)
        print(f"dydx http500: degraded after {time.monotonic() - t0:.2f} s")
        got = {p["id"]: p["level"] for p in w.get("/positions")["positions"]}
        assert set(got.values()) == {"unknown"}, got
        dx.server.fault = None
        wait_for(lambda: {p["level"] for p in w.get("/positions")["positions"]} == {"ok"}, DEGRADED_BOUND)
    finally:
        run_setup.cleanup()
        dx.stop()
