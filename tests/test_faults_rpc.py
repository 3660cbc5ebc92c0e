"""RPC faults under the real `watcher run --config`: a hostile JSON-RPC proxy between the watcher and anvil.

Each test starts `watcher run` (and `watcher check --json`) as a subprocess from a config file, breaks the node the
way public RPCs break (a trickling, stalled, oversized, lying, re-pointed, stuck, lagging or dead node) and asserts
what the user sees: a "degraded" message at the Telegram stand-in within a stated bound, positions "unknown" (never
"ok") in /health, /positions and `watcher check --json`, one "recovered" after the fault clears, and every level alert
the position crossed meanwhile, in order. Two anvils run real Aave v3.0 at the same addresses under different chain
ids, so a node that switches chains answers plausible state that only its chain id gives away. A config-effect test
per key (max_block_age, max_lag_blocks, max_response_bytes, verify_every, stale_after) runs the same fault under two
values of the key, side by side, and shows the behaviour change. The table of fault -> median seconds to the
degraded message -> alerts lost is printed at the end of the module.
"""

from __future__ import annotations

import itertools
import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.aave_helpers import batch_reader
from tests.configs import merge, write_toml
from tests.loopback import free_port
from tests.processes import TOKEN, TOKEN_ENV, CheckRun, WatcherProcess, check_json, wait_for
from tests.rpc_proxy import RpcProxy
from tests.run_harness import RunSetup, ref_of, set_price
from tests.telegram_server import Received, TelegramStandIn
from watcher.devchain.aave import AaveMarket, deploy_aave
from watcher.devchain.anvil import Anvil, rpc
from watcher.devchain.deploy import mine, revert_snapshot, take_snapshot

ALT_CHAIN_ID = 31338
#: the API key a provider puts in the URL's path: it must never reach a message, a log line or the API
SECRET = "SECRET-RPC-KEY-7f3a"
INTERVAL = 0.5
TIMEOUT = 1.0
#: slack for a subprocess on a 2-core machine shared by several test workers: scheduling, imports, one relay pass
SLACK = 2.0
#: `watcher check` may take the RPC timeout once per URL, plus this (interpreter start, config, verify, output)
CHECK_MARGIN = 6.0
#: a `watcher check` still running after this many seconds is killed and reported as hung
CHECK_KILL = 20.0
#: WETH prices (USD) that take the borrower (health 1.375 at $2,000) to warn, critical and liquidatable
LEVEL_PRICES = (("warn", 1_780), ("critical", 1_580), ("liquidatable", 1_400))
CHAT, CONTROL_CHAT = "42", "43"

#: fault -> seconds from the fault to the degraded message, one per run; and alerts lost per fault
LATENCIES: dict[str, list[float]] = {}
LOST: dict[str, int] = {}


# --- chains -----------------------------------------------------------------------------------------------------


@dataclass
class Chains:
    """Two anvils with the same Aave market and borrower at the same addresses, under different chain ids."""

    a: Anvil
    b: Anvil
    market: AaveMarket
    alt_market: AaveMarket
    borrower: str


@pytest.fixture(scope="module")
def chains() -> Iterator[Chains]:
    """Own anvils (not the session's): their clocks must be the wall clock for block ages to mean anything."""
    with Anvil(31337) as a, Anvil(ALT_CHAIN_ID) as b:
        market, alt = deploy_aave(a.w3, "3.0"), deploy_aave(b.w3, "3.0")
        assert batch_reader(a.w3) == batch_reader(b.w3) and market.addresses_provider == alt.addresses_provider
        borrower = market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
        assert alt.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6}) == borrower
        mine(a.w3, 30)  # a lagging node must still have the market at its older head
        mine(b.w3, 30)
        yield Chains(a, b, market, alt, borrower)


class Miner:
    """Mines a block on an anvil every `every` seconds, from a thread, so that its head advances like a real chain's."""

    def __init__(self, url: str, every: float = 1.0) -> None:
        self.url = url
        self.every = every
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="miner", daemon=True)

    def _run(self) -> None:
        body = {"jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": []}
        while not self._stop.wait(self.every):
            with self.lock:
                requests.post(self.url, json=body, timeout=10)

    def start(self) -> Miner:
        """Start mining; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop mining and join the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No block is mined inside (a price change batches its transactions in blocks of its own)."""
        with self.lock:
            yield


@dataclass
class World:
    """One test's pieces: the chains, a Telegram stand-in, proxies, watcher processes; all stopped afterwards."""

    chains: Chains
    telegram: TelegramStandIn
    tmp_path: Path
    setup: RunSetup
    proxies: list[RpcProxy] = field(default_factory=list)
    miners: list[Miner] = field(default_factory=list)
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(4))

    @property
    def borrower(self) -> str:
        """The watched account."""
        return self.chains.borrower

    def proxy(self) -> RpcProxy:
        """A new hostile proxy in front of anvil A (chain_switch goes to anvil B), its URL carrying a key."""
        p = RpcProxy(self.chains.a.url, self.chains.b.url, f"/v3/{SECRET}-{len(self.proxies)}").start()
        self.proxies.append(p)
        return p

    def miner(self) -> Miner:
        """Blocks on anvil A every second until the test ends."""
        m = Miner(self.chains.a.url).start()
        self.miners.append(m)
        return m

    def config(self, urls: list[str], name: str = "config.toml", chat: str = CHAT, **chain_keys: Any) -> Path:
        """A config over these RPC URLs, with its own database and API port, alerting to `chat`."""
        keys = {"interval": INTERVAL, "timeout": TIMEOUT} | chain_keys
        overrides = {
            "alerts": {"falling_drop": 5},  # "falling fast" notes are another test's subject
            "notify": {"telegram": {"chat_id": chat}},
            "storage": {"path": str(self.tmp_path / f"{name}.db")},
            "api": {"port": free_port()},
        }
        return write_toml(self.tmp_path / name, merge(self.setup.parts(rpc_urls=urls, **keys), overrides))

    def start(self, config: Path) -> WatcherProcess:
        """`watcher run` on this config, up and answering /health, with its first check done."""
        w = self.setup.start(config)
        wait_for(lambda: borrower_levels(w, self.borrower) == ["ok"], 30, what="the first check to read the position")
        return w

    def set_price(self, usd: int) -> None:
        """Move the WETH price on anvil A (the configured chain), with any miner paused."""
        with contextmanager_all(m.paused() for m in self.miners):
            set_price(self.chains.market, "WETH", usd)

    def close(self) -> None:
        """Stop everything this test started; proxies first, so that no watcher waits on a stalled answer to exit."""
        for m in self.miners:
            m.stop()
        for p in self.proxies:
            p.stop()
        self.setup.cleanup()
        self.pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def contextmanager_all(managers: Any) -> Iterator[None]:
    """Enter every context manager of an iterable, in order."""
    entered = list(managers)
    for m in entered:
        m.__enter__()
    try:
        yield
    finally:
        for m in reversed(entered):
            m.__exit__(None, None, None)


@pytest.fixture
def world(chains: Chains, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Chains rolled back after the test; a Telegram stand-in for two chats (the test's and a control's)."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    for node in (chains.a, chains.b):
        wall_clock(node)
    snaps = take_snapshot(chains.a.w3), take_snapshot(chains.b.w3)
    telegram = TelegramStandIn(TOKEN, chats=(CHAT, CONTROL_CHAT)).start()
    setup = RunSetup(chains.a, chains.market, telegram, tmp_path, chains.borrower)
    w = World(chains, telegram, tmp_path, setup)
    try:
        yield w
    finally:
        w.close()
        telegram.stop()
        revert_snapshot(chains.a.w3, snaps[0])
        revert_snapshot(chains.b.w3, snaps[1])
        for node in (chains.a, chains.b):
            wall_clock(node)


def wall_clock(node: Anvil) -> None:
    """Put anvil's clock back on the wall clock: evm_revert also rewinds it, and block ages must mean seconds."""
    rpc(node.w3, "evm_setTime", [int(time.time())])


@pytest.fixture(scope="module", autouse=True)
def fault_table(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print fault -> median seconds to the degraded message -> alerts lost, once the module is done."""
    yield
    if not LATENCIES and not LOST:
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["", "RPC faults: seconds from fault to the degraded message at Telegram; alerts lost (must be 0)"]
    lines.append(f"{'fault':<42} {'runs':>4} {'median s':>9} {'max s':>7} {'lost':>5}")
    for name in sorted(set(LATENCIES) | set(LOST)):
        got = LATENCIES.get(name, [])
        median = f"{statistics.median(got):.2f}" if got else "-"
        worst = f"{max(got):.2f}" if got else "-"
        lines.append(f"{name:<42} {len(got):>4} {median:>9} {worst:>7} {LOST.get(name, '-')!s:>5}")
    for line in lines:
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line)


# --- what the user sees -----------------------------------------------------------------------------------------


def kind_of(text: str) -> str:
    """degraded / recovered for the watcher's own health, else the level word of a position alert."""
    ref = ref_of(text) or ""
    if ref.startswith("chain:"):
        return ref.rsplit(":", 1)[-1]
    first = text.splitlines()[0].upper() if text else ""
    for word in ("LIQUIDATABLE", "CRITICAL", "WARN", "RECOVERED", "FALLING FAST"):
        if word in first:
            return "position recovered" if word == "RECOVERED" else word.lower()
    return "other"


def messages(telegram: TelegramStandIn, chat: str = CHAT, after: int = 0) -> list[tuple[str, Received]]:
    """(kind, message) of each message to `chat`, from index `after` of everything the stand-in accepted."""
    return [(kind_of(r.text), r) for r in list(telegram.received)[after:] if r.chat_id == chat]


def wait_message(
    telegram: TelegramStandIn, kind: str, *, after: int, timeout: float, chat: str = CHAT
) -> Received | None:
    """The first `kind` message to `chat` after index `after`, waiting up to `timeout` seconds; None if none came."""
    end = time.monotonic() + timeout
    while True:
        for k, r in messages(telegram, chat, after):
            if k == kind:
                return r
        if time.monotonic() >= end:
            return None
        time.sleep(0.05)


def borrower_levels(w: WatcherProcess, borrower: str) -> list[str]:
    """The borrower's levels in GET /positions."""
    return [p["level"] for p in w.get("/positions")["positions"] if p["account"] == borrower]


def assert_blind(w: WatcherProcess, borrower: str, samples: int = 2, every: float = 0.25) -> None:
    """While the node is broken: /health is degraded and the position unknown, never "ok", at every sample."""
    for _ in range(samples):
        health = w.get("/health")
        assert health["status"] == "degraded" and health["chains"]["local"]["degraded"], health
        levels = borrower_levels(w, borrower)
        assert levels == ["unknown"], f"/positions shows {levels} while the node is broken"
        time.sleep(every)


def assert_check_unknown(run: CheckRun, borrower: str, bound: float) -> None:
    """`watcher check --json` under the fault: exit 3 within the bound, the borrower unknown and nowhere "ok"."""
    assert run.code is not None, f"watcher check hung: killed after {run.seconds:.1f} s"
    assert run.code == 3, (run.code, run.stderr[-500:])
    assert run.seconds < bound, f"watcher check took {run.seconds:.1f} s (bound {bound:.1f} s)"
    assert run.doc is not None
    assert [p for p in run.doc["positions"] if p["account"] == borrower] == []
    assert any(borrower in u["accounts"] for u in run.doc["unknown"]), run.doc["unknown"]
    assert SECRET not in run.stderr and SECRET not in json.dumps(run.doc)


def assert_no_secret(world: World, *procs: WatcherProcess) -> None:
    """The URL's key is in no message, no log line and no API answer."""
    for r in world.telegram.received:
        assert SECRET not in r.text, r.text
    for w in procs:
        assert not any(SECRET in json.dumps(e) for e in w.logs()), "a log line carries the RPC key"
        assert not any(SECRET in line for line in w.other), "stderr carries the RPC key"
        if w.alive():
            assert SECRET not in json.dumps(w.get("/health")) and SECRET not in json.dumps(w.get("/positions"))


def check_concurrently(world: World, config: Path, timeout: float) -> Future[CheckRun]:
    """`watcher check --json` in a thread (it runs while the test waits for the daemon's message)."""
    return world.pool.submit(check_json, config, timeout)


# --- the fault cycle --------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """How to break the node and mend it, and the bounds the user may expect."""

    name: str
    apply: Callable[[int], None]  #: called with the cycle number
    clear: Callable[[int], None]
    bound: float  #: seconds from the fault to the degraded message
    recover_bound: float  #: seconds from the fix to the recovered message
    during: Callable[[int], None] | None = None  #: more checks while degraded (the first cycle only, or each)
    after: Callable[[int], None] | None = None  #: more checks once recovered and the level alert came


def run_cycles(world: World, w: WatcherProcess, fault: Fault, cycles: int = 3) -> list[float]:
    """Break, see degraded and unknown, worsen the position while blind, mend, see recovered and the level alert.

    Returns the seconds from each fault to its degraded message; records them and the alerts lost for the table.
    """
    latencies: list[float] = []
    LATENCIES[fault.name] = latencies
    started = 0
    start = len(world.telegram.received)
    try:
        for cycle in range(cycles):
            started = cycle + 1
            level, price = LEVEL_PRICES[cycle % len(LEVEL_PRICES)]
            mark = len(world.telegram.received)
            t0 = time.monotonic()
            fault.apply(cycle)
            got = wait_message(world.telegram, "degraded", after=mark, timeout=fault.bound * 1.5 + SLACK)
            assert got is not None, f"{fault.name}: no degraded message within {fault.bound * 1.5 + SLACK:.1f} s"
            latencies.append(got.at - t0)
            print(f"{fault.name} run {cycle + 1}: degraded after {got.at - t0:.2f} s")
            assert got.at - t0 <= fault.bound, f"{fault.name}: degraded after {got.at - t0:.2f} s > {fault.bound} s"
            assert_blind(w, world.borrower)
            world.set_price(price)  # the position worsens while the watcher cannot see it
            if fault.during is not None:
                fault.during(cycle)
            assert_blind(w, world.borrower, samples=2)
            t1 = time.monotonic()
            fault.clear(cycle)
            back = wait_message(world.telegram, "recovered", after=mark, timeout=fault.recover_bound + SLACK)
            assert back is not None, f"{fault.name}: no recovered message within {fault.recover_bound + SLACK:.1f} s"
            print(f"{fault.name} run {cycle + 1}: recovered {back.at - t1:.2f} s after the fix")
            alert = wait_message(world.telegram, level, after=mark, timeout=fault.recover_bound + SLACK)
            assert alert is not None, f"{fault.name}: the {level} alert after recovery never came"
            assert borrower_levels(w, world.borrower) == [level]
            if fault.after is not None:
                fault.after(cycle)
        time.sleep(2 * INTERVAL)  # a late duplicate would show here
    finally:
        seen = [k for k, _ in messages(world.telegram, CHAT, start)]
        LOST[fault.name] = _lost(_planned(started), seen)
    chain_kinds = [k for k in seen if k in ("degraded", "recovered")]
    assert chain_kinds == ["degraded", "recovered"] * cycles, seen
    levels = [k for k in seen if k in ("warn", "critical", "liquidatable")]
    assert levels == [lv for lv, _ in LEVEL_PRICES][:cycles], f"level alerts out of order or lost: {seen}"
    assert LOST[fault.name] == 0
    return latencies


def _planned(cycles: int) -> list[str]:
    return [k for c in range(cycles) for k in ("degraded", "recovered", LEVEL_PRICES[c % 3][0])]


def _lost(expected: list[str], seen: list[str]) -> int:
    """Expected messages not seen, by kind (order is asserted apart: a recovered and the level alert it lets through
    come from one check, in either order)."""
    got = Counter(seen)
    return sum(max(0, n - got[k]) for k, n in Counter(expected).items())


# --- the faults -------------------------------------------------------------------------------------------------


def test_trickling_node_is_degraded_within_the_timeout_and_check_returns(world: World) -> None:
    """One byte every 2 s with timeout = 3: degraded within timeout + interval + 2 s; `watcher check` under 10 s."""
    timeout, interval = 3.0, 1.0
    p = world.proxy()
    w = world.start(world.config([p.url], timeout=timeout, interval=interval))
    for_check = world.proxy()  # the chain id answers: a node slow on reads, so the check must report unknown
    check_cfg = world.config([for_check.url], name="check.toml", timeout=timeout, interval=interval)
    runs: list[Future[CheckRun]] = []

    def apply(cycle: int) -> None:
        p.set_mode("trickle", every=2.0)
        if cycle == 0:
            for_check.set_mode("trickle", every=2.0, spare={"eth_chainId"})
            runs.append(check_concurrently(world, check_cfg, CHECK_KILL))

    def during(cycle: int) -> None:
        if cycle == 0:
            run = runs[0].result(CHECK_KILL + 10)
            print(f"trickle: watcher check returned in {run.seconds:.2f} s with exit {run.code}")
            assert_check_unknown(run, world.borrower, min(10.0, timeout + CHECK_MARGIN))

    bound = timeout + interval + 2
    fault = Fault("trickle (1 B / 2 s, timeout 3)", apply, lambda c: p.clear(), bound, 2 * interval + 2, during)
    run_cycles(world, w, fault, cycles=2)  # 2 runs: each costs the 3 s deadline
    assert w.alive()
    assert_no_secret(world, w)


def test_stalled_node_is_degraded_and_check_returns(world: World) -> None:
    """Accepts, reads the request, never answers: degraded within timeout + interval + 2 s, check exit 3."""
    p = world.proxy()
    w = world.start(world.config([p.url]))
    for_check = world.proxy()
    check_cfg = world.config([for_check.url], name="check.toml")
    runs: list[Future[CheckRun]] = []

    def apply(cycle: int) -> None:
        p.set_mode("stall")
        if cycle == 0:
            for_check.set_mode("stall", spare={"eth_chainId"})
            runs.append(check_concurrently(world, check_cfg, CHECK_KILL))

    def during(cycle: int) -> None:
        if cycle == 0:
            run = runs[0].result(CHECK_KILL + 10)
            print(f"stall: watcher check returned in {run.seconds:.2f} s with exit {run.code}")
            assert_check_unknown(run, world.borrower, TIMEOUT + CHECK_MARGIN)

    fault = Fault("stall", apply, lambda c: p.clear(), TIMEOUT + INTERVAL + 2, 2 * INTERVAL + TIMEOUT + 2, during)
    run_cycles(world, w, fault)
    assert w.alive()


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


def test_oversized_answer_is_refused_without_filling_memory(world: World) -> None:
    """A 50 MB answer (chunked, no Content-Length): refused part way, degraded, no crash, peak RSS barely moves."""
    p = world.proxy()
    w = world.start(world.config([p.url]))
    for_check = world.proxy()
    check_cfg = world.config([for_check.url], name="check.toml")
    time.sleep(1)
    idle_peak = _peak_rss_kib(w.pid)
    runs: list[Future[CheckRun]] = []

    def apply(cycle: int) -> None:
        p.set_mode("oversize", size=50_000_000)
        if cycle == 0:
            for_check.set_mode("oversize", size=50_000_000, spare={"eth_chainId"})
            runs.append(check_concurrently(world, check_cfg, CHECK_KILL))

    def during(cycle: int) -> None:
        peak = _peak_rss_kib(w.pid)
        print(f"oversize run {cycle + 1}: peak RSS {peak / 1024:.0f} MiB (idle peak {idle_peak / 1024:.0f} MiB)")
        print(f"oversize run {cycle + 1}: bytes the proxy got to send per answer: {p.sent_bytes}")
        assert w.alive() and not [line for line in w.other if "Traceback" in line]
        assert p.sent_bytes and max(p.sent_bytes) < 50_000_000, f"the whole 50 MB was read: {p.sent_bytes}"
        assert peak - idle_peak < 100 * 1024, f"peak RSS grew by {(peak - idle_peak) / 1024:.0f} MiB on 50 MB"
        if cycle == 0:
            run = runs[0].result(CHECK_KILL + 10)
            print(f"oversize: watcher check returned in {run.seconds:.2f} s with exit {run.code}")
            assert_check_unknown(run, world.borrower, TIMEOUT + CHECK_MARGIN)

    fault = Fault("oversize (50 MB)", apply, lambda c: p.clear(), TIMEOUT + INTERVAL + 2, 2 * INTERVAL + 2, during)
    run_cycles(world, w, fault)
    assert w.alive()


def test_answers_with_wrong_ids_are_refused(world: World) -> None:
    """Answers carrying another JSON-RPC id are not accepted: degraded, unknown, then recovered."""
    p = world.proxy()
    w = world.start(world.config([p.url]))
    for_check = world.proxy()
    check_cfg = world.config([for_check.url], name="check.toml")
    runs: list[Future[CheckRun]] = []

    def apply(cycle: int) -> None:
        p.set_mode("wrong_id")
        if cycle == 0:
            for_check.set_mode("wrong_id", spare={"eth_chainId"})
            runs.append(check_concurrently(world, check_cfg, CHECK_KILL))

    def during(cycle: int) -> None:
        if cycle == 0:
            run = runs[0].result(CHECK_KILL + 10)
            print(f"wrong_id: watcher check returned in {run.seconds:.2f} s with exit {run.code}")
            assert_check_unknown(run, world.borrower, TIMEOUT + CHECK_MARGIN)

    fault = Fault("wrong ids", apply, lambda c: p.clear(), TIMEOUT + INTERVAL + 2, 2 * INTERVAL + 2, during)
    run_cycles(world, w, fault)


def test_node_that_switches_chains_is_dropped_and_named(world: World) -> None:
    """The URL starts answering another chain (same contracts, healthy there): degraded naming rpc_urls[0] only."""
    verify_every = 1.0
    p = world.proxy()
    w = world.start(world.config([p.url], verify_every=verify_every))
    bound = verify_every + INTERVAL + TIMEOUT + 2
    fault = Fault(
        "chain switch (1 URL)",
        lambda c: p.set_mode("chain_switch"),
        lambda c: p.clear(),
        bound,
        verify_every + 2 * INTERVAL + TIMEOUT + 2,
    )
    run_cycles(world, w, fault)
    p.set_mode("chain_switch")  # `watcher check` against it: refused at start-up, in one line naming the key
    run = check_json(world.config([p.url], name="check.toml"), CHECK_KILL)
    print(f"chain switch: watcher check returned in {run.seconds:.2f} s with exit {run.code}: {run.stderr.strip()}")
    assert run.code == 2 and run.seconds < TIMEOUT + CHECK_MARGIN, (run.code, run.seconds, run.stderr)
    assert "chains.local.rpc_urls[0]" in run.stderr and str(ALT_CHAIN_ID) in run.stderr
    assert SECRET not in run.stderr and run.stderr.strip().count("\n") == 0
    degraded = [r.text for k, r in messages(world.telegram) if k == "degraded"]
    assert all("chains.local.rpc_urls[0]" in t for t in degraded), degraded
    assert_no_secret(world, w)


def test_chain_switch_with_a_second_good_url_keeps_reading(world: World) -> None:
    """URL 0 switches chains: a degraded message names it, and the position is still read through URL 1."""
    verify_every = 1.0
    bad, good = world.proxy(), world.proxy()
    w = world.start(world.config([bad.url, good.url], verify_every=verify_every))
    mark = len(world.telegram.received)
    t0 = time.monotonic()
    bad.set_mode("chain_switch")
    bound = verify_every + INTERVAL + TIMEOUT + 2
    got = wait_message(world.telegram, "degraded", after=mark, timeout=bound * 1.5 + SLACK)
    assert got is not None, "no degraded message naming the switched URL"
    LATENCIES["chain switch (2 URLs)"] = [got.at - t0]
    print(f"chain switch, 2 URLs: degraded after {got.at - t0:.2f} s")
    assert got.at - t0 <= bound
    assert "chains.local.rpc_urls[0]" in got.text and "rpc_urls[1]" not in got.text, got.text
    dropped = time.monotonic() + 2 * INTERVAL
    world.set_price(1_400)
    alert = wait_message(world.telegram, "liquidatable", after=mark, timeout=4 * INTERVAL + SLACK)
    LOST["chain switch (2 URLs)"] = int(alert is None)
    assert alert is not None, "the position went liquidatable on the configured chain and no alert came"
    assert borrower_levels(w, world.borrower) == ["liquidatable"]
    wait_for(lambda: good.count("eth_call", since=dropped) >= 3, 4 * INTERVAL + SLACK, what="reads through URL 1")
    assert bad.count("eth_call", since=dropped) == 0, "reads still go to the URL on the other chain"
    t1 = time.monotonic()
    bad.clear()
    back = wait_message(world.telegram, "recovered", after=mark, timeout=verify_every + 2 * INTERVAL + SLACK)
    assert back is not None, "no recovered message once rpc_urls[0] answers the configured chain again"
    print(f"chain switch, 2 URLs: recovered {back.at - t1:.2f} s after the fix")
    time.sleep(2 * INTERVAL)
    kinds = [k for k, _ in messages(world.telegram, CHAT, mark)]
    assert kinds.count("degraded") == 1 and kinds.count("recovered") == 1, kinds
    assert_no_secret(world, w)


def test_stuck_head_is_degraded_after_max_block_age(world: World) -> None:
    """The chain mines every second; the proxy's head freezes: degraded once it is max_block_age old."""
    max_block_age = 4.0
    world.miner()
    p = world.proxy()
    w = world.start(world.config([p.url], max_block_age=max_block_age))
    runs: list[CheckRun] = []
    check_cfg = world.config([p.url], name="check.toml", max_block_age=max_block_age)

    def during(cycle: int) -> None:
        if cycle == 0:  # the frozen head is older than max_block_age by now
            run = check_json(check_cfg, CHECK_KILL)
            print(f"stuck head: watcher check returned in {run.seconds:.2f} s with exit {run.code}")
            assert_check_unknown(run, world.borrower, TIMEOUT + CHECK_MARGIN)
            runs.append(run)

    fault = Fault(
        "stuck head (max_block_age 4)",
        lambda c: p.set_mode("stuck_head"),
        lambda c: p.clear(),
        max_block_age + INTERVAL + 2,
        2 * INTERVAL + 2,
        during,
    )
    run_cycles(world, w, fault, cycles=2)  # 2 runs: each waits out max_block_age
    assert runs


def test_lagging_node_is_left_out_of_reads(world: World) -> None:
    """Two URLs, the first 6 blocks behind (max_lag_blocks 3): every eth_call goes to the fresh one."""
    world.miner()
    lagging, fresh = world.proxy(), world.proxy()
    lagging.set_mode("lag", blocks=6)
    w = world.start(world.config([lagging.url, fresh.url], max_lag_blocks=3))
    since = time.monotonic()
    time.sleep(6 * INTERVAL)
    assert lagging.count("eth_call", since=since) == 0, lagging.counts(since)
    assert fresh.count("eth_call", since=since) >= 3, fresh.counts(since)
    assert lagging.count("eth_getBlockByNumber", since=since) >= 1  # still asked for its head: it may catch up
    assert borrower_levels(w, world.borrower) == ["ok"]
    mark = len(world.telegram.received)
    world.set_price(1_400)
    alert = wait_message(world.telegram, "liquidatable", after=mark, timeout=4 * INTERVAL + SLACK)
    LOST["lagging node (2 URLs, not degraded)"] = int(alert is None)
    assert alert is not None


def test_dead_node_then_back_is_recovered_and_its_chain_id_checked_again(world: World) -> None:
    """Refused connections or HTTP 503, then back: recovered, and eth_chainId asked again once it answers."""
    p = world.proxy()
    w = world.start(world.config([p.url]))  # verify_every stays 300 s: only the comeback explains a re-check
    hows = ("refuse", "503", "refuse")
    ups: list[float] = []

    def clear(cycle: int) -> None:
        ups.append(time.monotonic())
        p.clear()

    def reverified(cycle: int) -> None:
        up = ups[cycle]
        asked = [s.at - up for s in list(p.seen) if s.method == "eth_chainId" and s.at >= up]
        calls = [s.at - up for s in list(p.seen) if s.method == "eth_call" and s.at >= up]
        print(
            f"down run {cycle + 1}: eth_chainId asked {len(asked)} time(s) after the node came back"
            f" (first at +{asked[0] if asked else float('nan'):.2f} s, first eth_call at"
            f" +{calls[0] if calls else float('nan'):.2f} s)"
        )
        assert asked, f"run {cycle + 1}: the chain id was not verified again after the node came back"

    fault = Fault(
        "down (refused / HTTP 503)",
        lambda c: p.set_mode("down", how=hows[c]),
        clear,
        TIMEOUT + INTERVAL + 2,
        2 * INTERVAL + TIMEOUT + 2,
        after=reverified,
    )
    run_cycles(world, w, fault)


def test_a_stalled_chain_delays_no_other_chain(world: World) -> None:
    """chains.local stalls (timeout 3 s) while chains.other reads anvil B: other keeps its 0.5 s cadence and its
    liquidation is alerted within 3 s, while local is degraded."""
    p = world.proxy()
    parts = world.setup.parts(rpc_urls=[p.url], interval=INTERVAL, timeout=3.0)
    parts["chains"]["other"] = parts["chains"]["local"] | {"chain_id": ALT_CHAIN_ID, "rpc_urls": [world.chains.b.url]}
    parts["deployments"][0]["chains"] = ["local", "other"]
    overrides = {"alerts": {"falling_drop": 5}, "storage": {"path": str(world.tmp_path / "two.db")}}
    w = world.setup.start(
        write_toml(world.tmp_path / "two.toml", merge(parts, overrides | {"api": {"port": free_port()}}))
    )
    wait_for(lambda: borrower_levels(w, world.borrower) == ["ok", "ok"], 30, what="both chains read")
    mark = len(world.telegram.received)
    p.set_mode("stall")
    t0 = time.monotonic()
    time.sleep(1.0)
    set_price(world.chains.alt_market, "WETH", 1_400)  # liquidatable on chain B only
    priced = time.monotonic()
    liq = wait_message(world.telegram, "liquidatable", after=mark, timeout=3.0 + SLACK)
    time.sleep(max(0.0, t0 + 6.0 - time.monotonic()))
    other = [e["_at"] for e in w.logs("check", chain="other") if e["_at"] >= t0]
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(other)]
    print(f"stalled local: other checked {len(other)} times in 6 s, gaps up to {max(gaps, default=0):.2f} s")
    assert liq is not None, "a liquidation on the healthy chain was not alerted while the other chain stalled"
    print(f"stalled local: other's liquidation alerted {liq.at - priced:.2f} s after its block")
    assert "on other" in liq.text.splitlines()[0], liq.text
    assert liq.at - priced <= 3.0, f"alerted {liq.at - priced:.2f} s after the block"
    assert len(other) >= 8 and max(gaps) <= 2 * INTERVAL + 0.5, gaps
    degraded = wait_message(world.telegram, "degraded", after=mark, timeout=1.0)
    assert degraded is not None and "local" in degraded.text.splitlines()[0], degraded
    assert sorted(borrower_levels(w, world.borrower)) == ["liquidatable", "unknown"]
    p.clear()


def test_a_fast_stuck_url_does_not_hide_a_slower_healthy_one(world: World) -> None:
    """URL 0 answers at once with a frozen head, URL 1 is healthy but 0.8 s away (past the 0.5 s head grace): the
    chain is read through URL 1 and never degraded; the position's liquidation is alerted."""
    world.miner()
    stuck, distant = world.proxy(), world.proxy()
    world.start(world.config([stuck.url, distant.url], max_block_age=4.0, timeout=3.0))
    mark = len(world.telegram.received)
    stuck.set_mode("stuck_head")
    distant.set_mode("delay", every=0.8)
    since = time.monotonic()
    time.sleep(4.0 + 3.0)  # the frozen head is past max_block_age by now
    world.set_price(1_400)
    alert = wait_message(world.telegram, "liquidatable", after=mark, timeout=4.0 + SLACK)
    kinds = [k for k, _ in messages(world.telegram, CHAT, mark)]
    print(f"fast stuck + distant healthy: eth_calls {distant.count('eth_call', since=since)} via the distant URL,")
    print(f"  {stuck.count('eth_call', since=since)} via the stuck one; messages {kinds}")
    LOST["fast stuck URL + distant healthy URL"] = int(alert is None)
    assert alert is not None, f"no liquidatable alert: {kinds}"
    assert "degraded" not in kinds, kinds
    assert distant.count("eth_call", since=since) >= 2


def test_a_third_url_back_on_its_chain_is_recovered(world: World) -> None:
    """Three URLs, the third switches chains and back: one degraded naming rpc_urls[2], then one recovered (the
    third is asked again although the first two answer)."""
    urls = [world.proxy() for _ in range(3)]
    w = world.start(world.config([p.url for p in urls], verify_every=1.0))
    mark = len(world.telegram.received)
    urls[2].set_mode("chain_switch")
    got = wait_message(world.telegram, "degraded", after=mark, timeout=1.0 + INTERVAL + TIMEOUT + 2 + SLACK)
    assert got is not None and "chains.local.rpc_urls[2]" in got.text, got
    urls[2].clear()
    back = wait_message(world.telegram, "recovered", after=mark, timeout=1.0 + 4 * INTERVAL + TIMEOUT + SLACK)
    assert back is not None, "rpc_urls[2] answers the configured chain again but the chain stays degraded"
    assert borrower_levels(w, world.borrower) == ["ok"]


def test_an_answer_for_another_block_is_asked_again_then_degraded(world: World) -> None:
    """One eth_call answered from the block before the one asked: asked again 0.2 s later, no alert. Every one so
    answered: degraded ("asked for block N, the node answered for N-1"), positions unknown, recovered after."""
    p = world.proxy()
    w = world.start(world.config([p.url]))
    mark = len(world.telegram.received)
    p.set_mode("wrong_block", times=1)
    time.sleep(4 * INTERVAL)
    assert _no_message(world.telegram, "degraded", CHAT, mark), "one answer for the wrong block raised an alert"
    assert borrower_levels(w, world.borrower) == ["ok"]
    fault = Fault(
        "answers for another block",
        lambda c: p.set_mode("wrong_block"),
        lambda c: p.clear(),
        TIMEOUT + INTERVAL + 2,
        2 * INTERVAL + 2,
    )
    run_cycles(world, w, fault)
    degraded = [r.text for k, r in messages(world.telegram, CHAT, mark) if k == "degraded"]
    assert all("the node answered for" in t for t in degraded), degraded


def test_a_rate_limit_asking_a_days_rest_does_not_blind_the_chain_for_a_day(world: World) -> None:
    """The only URL answers 429 with Retry-After: 86400: degraded, then, once it answers again, recovered within
    seconds (the resting URL is still asked when every URL rests; a rest is capped at 300 s anyway)."""
    p = world.proxy()
    w = world.start(world.config([p.url]))
    fault = Fault(
        "429 with Retry-After 86400",
        lambda c: p.set_mode("down", how="429"),
        lambda c: p.clear(),
        TIMEOUT + INTERVAL + 2,
        2 * INTERVAL + TIMEOUT + 2,
    )
    run_cycles(world, w, fault, cycles=2)


# --- config effects: the same fault under two values of one key ------------------------------------------------


def _no_message(telegram: TelegramStandIn, kind: str, chat: str, after: int) -> bool:
    return all(k != kind for k, _ in messages(telegram, chat, after))


def test_config_max_block_age_decides_when_a_stuck_head_is_stale(world: World) -> None:
    """max_block_age 4 s: degraded; 3600 s: the same stuck head still reads (as configured)."""
    world.miner()
    p = world.proxy()
    strict = world.start(world.config([p.url], name="strict.toml", max_block_age=4.0))
    lenient = world.start(world.config([p.url], name="lenient.toml", chat=CONTROL_CHAT, max_block_age=3600.0))
    mark, t0 = len(world.telegram.received), time.monotonic()
    frozen = p.set_mode("stuck_head").frozen
    wall_minus_mono = time.time() - time.monotonic()
    stamp = int(world.chains.a.w3.eth.get_block(frozen)["timestamp"])
    got = wait_message(world.telegram, "degraded", after=mark, timeout=4.0 + INTERVAL + 2 + SLACK)
    assert got is not None, "max_block_age = 4 did not make a 4 s old head stale"
    LATENCIES["config: max_block_age 4 (stuck head)"] = [got.at - t0]
    age = got.at + wall_minus_mono - stamp
    print(f"max_block_age 4: degraded after {got.at - t0:.2f} s, the frozen head then {age:.2f} s old")
    assert 4.0 <= age <= 4.0 + INTERVAL + SLACK, f"degraded when the head was {age:.2f} s old (max_block_age 4)"
    assert borrower_levels(strict, world.borrower) == ["unknown"]
    assert _no_message(world.telegram, "degraded", CONTROL_CHAT, mark)
    assert borrower_levels(lenient, world.borrower) == ["ok"]


def test_config_max_lag_blocks_decides_which_node_is_read(world: World) -> None:
    """The fresh URL fails its eth_calls; the other lags 6 blocks: max_lag_blocks 10 lets it be asked, 3 does not."""
    world.miner()
    strict_fresh, strict_lag, loose_fresh, loose_lag = (world.proxy() for _ in range(4))
    for p in (strict_lag, loose_lag):
        p.set_mode("lag", blocks=6)
    world.start(world.config([strict_fresh.url, strict_lag.url], name="strict.toml", max_lag_blocks=3))
    loose = world.config([loose_fresh.url, loose_lag.url], name="loose.toml", chat=CONTROL_CHAT, max_lag_blocks=10)
    world.start(loose)
    since = time.monotonic()
    for p in (strict_fresh, loose_fresh):
        p.set_mode("down", how="503", only={"eth_call"})  # heads still answer: the fallback for reads is the question
    time.sleep(6 * INTERVAL)
    print(f"max_lag_blocks 3: lagging {dict(strict_lag.counts(since))}, fresh {dict(strict_fresh.counts(since))}")
    print(f"max_lag_blocks 10: lagging {dict(loose_lag.counts(since))}, fresh {dict(loose_fresh.counts(since))}")
    assert strict_fresh.count("eth_call", since=since) >= 2 and loose_fresh.count("eth_call", since=since) >= 2
    assert strict_lag.count("eth_call", since=since) == 0, "max_lag_blocks = 3 read from a node 6 blocks behind"
    assert loose_lag.count("eth_call", since=since) >= 2, "max_lag_blocks = 10 still left a 6-block laggard out"


def test_config_max_response_bytes_caps_an_answer(world: World) -> None:
    """Every answer padded to 400 kB (valid JSON): refused with max_response_bytes 100 kB, read with 1 MB."""
    p_small, p_large = world.proxy(), world.proxy()
    small = world.start(world.config([p_small.url], name="small.toml", max_response_bytes=100_000))
    large = world.start(world.config([p_large.url], name="large.toml", chat=CONTROL_CHAT, max_response_bytes=1_000_000))
    mark, t0 = len(world.telegram.received), time.monotonic()
    for p in (p_small, p_large):
        p.set_mode("pad", size=400_000, spare={"eth_chainId"})
    got = wait_message(world.telegram, "degraded", after=mark, timeout=TIMEOUT + INTERVAL + 2 + SLACK)
    assert got is not None, "a 400 kB answer was accepted with max_response_bytes = 100000"
    LATENCIES["config: max_response_bytes 100 kB"] = [got.at - t0]
    print(f"max_response_bytes 100000: degraded after {got.at - t0:.2f} s")
    assert borrower_levels(small, world.borrower) == ["unknown"]
    time.sleep(2 * INTERVAL)
    assert _no_message(world.telegram, "degraded", CONTROL_CHAT, mark), "1 MB cap refused a 400 kB answer"
    assert borrower_levels(large, world.borrower) == ["ok"]


def test_config_verify_every_is_the_chain_id_recheck_period(world: World) -> None:
    """A URL switches chains right after a chain-id check: verify_every 1 s sees it at once, 5 s only later."""
    fast_p, slow_p = world.proxy(), world.proxy()
    world.start(world.config([fast_p.url], name="fast.toml", verify_every=1.0))
    world.start(world.config([slow_p.url], name="slow.toml", chat=CONTROL_CHAT, verify_every=5.0))
    # switch just after the slow watcher asked for the chain id, so its next check is a full period away
    asked = slow_p.count("eth_chainId")
    wait_for(lambda: slow_p.count("eth_chainId") > asked, 10, every=0.02, what="the 5 s chain-id re-check")
    mark, t0 = len(world.telegram.received), time.monotonic()
    fast_p.set_mode("chain_switch")
    slow_p.set_mode("chain_switch")
    fast = wait_message(world.telegram, "degraded", after=mark, timeout=1.0 + INTERVAL + TIMEOUT + 2 + SLACK)
    assert fast is not None, "verify_every = 1: the switch went unseen"
    LATENCIES["config: verify_every 1 (chain switch)"] = [fast.at - t0]
    print(f"verify_every 1: degraded after {fast.at - t0:.2f} s")
    assert fast.at - t0 <= 1.0 + INTERVAL + TIMEOUT + 2
    left = max(0.0, t0 + 3.5 - time.monotonic())
    early = wait_message(world.telegram, "degraded", after=mark, timeout=left, chat=CONTROL_CHAT)
    assert early is None, f"verify_every = 5 re-checked after {early.at - t0 if early else 0:.2f} s"
    bound = 5.0 + INTERVAL + TIMEOUT + 2
    slow = wait_message(world.telegram, "degraded", after=mark, timeout=bound + SLACK, chat=CONTROL_CHAT)
    assert slow is not None, "verify_every = 5: the switch was never seen"
    LATENCIES["config: verify_every 5 (chain switch)"] = [slow.at - t0]
    print(f"verify_every 5: degraded after {slow.at - t0:.2f} s")
    assert 3.5 <= slow.at - t0 <= bound


def test_config_stale_after_is_the_watchdog(world: World) -> None:
    """A stalled node with timeout 10 s: stale_after 2 s degrades before the timeout; stale_after 20 s waits for it."""
    p_fast, p_slow = world.proxy(), world.proxy()
    keys = {"timeout": 10.0}
    world.start(world.config([p_fast.url], name="fast.toml", stale_after=2.0, **keys))
    world.start(world.config([p_slow.url], name="slow.toml", chat=CONTROL_CHAT, stale_after=20.0, **keys))
    mark, t0 = len(world.telegram.received), time.monotonic()
    p_fast.set_mode("stall")
    p_slow.set_mode("stall")
    got = wait_message(world.telegram, "degraded", after=mark, timeout=2.0 + INTERVAL + 2 + SLACK)
    assert got is not None, "stale_after = 2: no degraded message before the 10 s request deadline"
    LATENCIES["config: stale_after 2 (stall, timeout 10)"] = [got.at - t0]
    print(f"stale_after 2 (timeout 10): degraded after {got.at - t0:.2f} s")
    assert got.at - t0 <= 2.0 + INTERVAL + 2, "the watchdog took longer than stale_after + interval + 2 s"
    left = max(0.0, t0 + 6.0 - time.monotonic())
    late = wait_message(world.telegram, "degraded", after=mark, timeout=left, chat=CONTROL_CHAT)
    assert late is None, f"stale_after = 20 (timeout 10) degraded after {late.at - t0 if late else 0:.2f} s"
    print("stale_after 20 (timeout 10): no degraded message in the first 6 s, as configured")


# --- the instrument itself --------------------------------------------------------------------------------------


def test_proxy_modes_answer_as_documented(chains: Chains) -> None:
    """The proxy's modes, checked against anvil directly: ids, chains, heads, sizes, refusals, and counts."""

    def ask(url: str, body: Any, timeout: float = 5.0) -> requests.Response:
        return requests.post(url, json=body, timeout=timeout)

    one = {"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": []}
    batch = [
        {"jsonrpc": "2.0", "id": i, "method": m, "params": []} for i, m in enumerate(("eth_chainId", "eth_blockNumber"))
    ]
    with RpcProxy(chains.a.url, chains.b.url, f"/v3/{SECRET}") as p:
        assert ask(p.url, one).json()["result"] == hex(31337)
        p.set_mode("wrong_id")
        assert ask(p.url, one).json()["id"] != 7
        assert {a["id"] for a in ask(p.url, batch).json()}.isdisjoint({0, 1})
        p.set_mode("chain_switch")
        assert ask(p.url, one).json()["result"] == hex(ALT_CHAIN_ID)
        head = chains.a.w3.eth.block_number
        p.set_mode("stuck_head")
        mine(chains.a.w3, 2)
        assert int(ask(p.url, batch).json()[1]["result"], 16) == head
        p.set_mode("lag", blocks=2)
        assert int(ask(p.url, batch).json()[1]["result"], 16) == chains.a.w3.eth.block_number - 2
        p.set_mode("pad", size=50_000)
        r = ask(p.url, one)
        assert len(r.content) == 50_000 and r.json()["result"] == hex(31337)
        p.set_mode("down", how="503")
        assert ask(p.url, one).status_code == 503
        p.set_mode("down")
        with pytest.raises(requests.ConnectionError):
            ask(p.url, one)
        p.set_mode("stall")
        t0 = time.monotonic()
        with pytest.raises(requests.Timeout):
            ask(p.url, one, timeout=0.5)
        assert time.monotonic() - t0 < 2
        p.set_mode("oversize", size=5_000_000)
        assert len(ask(p.url, one).content) == 5_000_000
        p.set_mode("trickle", every=0.01)
        assert ask(p.url, one).json()["result"] == hex(31337)
        p.set_mode("trickle", every=2.0, spare={"eth_chainId"})
        assert ask(p.url, one, timeout=1.0).json()["result"] == hex(31337)
        assert p.count("eth_chainId") >= 12 and p.count("eth_blockNumber") == 3
