"""Faults under the real `watcher run --config`: a locked, full and read-only database, a 50-message burst, SIGKILL.

Each test drives the daemon as a subprocess from a config file, breaks something a user's machine really breaks, and
asserts what the user sees at the Telegram stand-in and in the HTTP API, and how fast.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import run_harness
from tests.configs import write_toml
from tests.processes import WatcherProcess, wait_for
from tests.run_harness import RunSetup, first_lines, open_borrowers, ref_of, set_price
from tests.smtp_servers import StuckSMTP
from tests.switchable_node import SwitchableNode
from tests.telegram_server import TelegramStandIn

# The harness's fixtures, found by pytest under these names.
run_market = run_harness.run_market
run_setup = run_harness.run_setup
telegram_standin = run_harness.telegram_standin

INTERVAL = 0.5
#: How long each database fault lasts: longer than SQLite's default 5 s busy wait, so a commit must fail.
FAULT_SECONDS = 8.0
#: After a fault clears, the alert it held back reaches Telegram within this many seconds.
AFTER_CLEAR_BOUND = 5.0
DEGRADED = "Watcher degraded on local"
RECOVERED = "Watcher reads local again"


# --- database faults ---------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs to fill up (needs root and mount; this fails, not skips, where that is not allowed)."""
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full test: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


class DbFault:
    """One way a database stops taking writes: held by another writer, no space left, or files made unwritable."""

    def __init__(self, kind: str, db: Path) -> None:
        self.kind = kind
        self.db = db
        self._conn: sqlite3.Connection | None = None
        self._filler: Path | None = None
        self._frozen: list[Path] = []

    def apply(self) -> None:
        """Start the fault."""
        if self.kind == "locked":
            # In WAL mode EXCLUSIVE is the write lock: readers go on, every other writer gets "database is locked".
            self._conn = sqlite3.connect(self.db, timeout=0, isolation_level=None)
            self._conn.execute("BEGIN EXCLUSIVE")
        elif self.kind == "full":
            self._filler = self.db.parent / "filler"
            fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                for size in (1 << 20, 1 << 16, 4096, 512):
                    try:
                        while True:
                            os.write(fd, bytes(size))
                    except OSError:
                        pass  # ENOSPC: on to smaller writes, until not one byte fits
            finally:
                os.close(fd)
            assert os.statvfs(self.db.parent).f_bavail == 0
        elif self.kind == "readonly":
            # As root, mode bits do not stop writes; the immutable flag does. Not on -shm: SQLite maps it, and a
            # write to an immutable mapping is SIGBUS, a different fault from a read-only disk.
            self._frozen = [p for p in (self.db, self.db.with_name(self.db.name + "-wal")) if p.exists()]
            for p in self._frozen:
                subprocess.run(["chattr", "+i", str(p)], check=True)
        else:
            raise ValueError(self.kind)

    def clear(self) -> None:
        """End the fault (safe to call twice)."""
        if self._conn is not None:
            self._conn.execute("ROLLBACK")
            self._conn.close()
            self._conn = None
        if self._filler is not None:
            self._filler.unlink(missing_ok=True)
            self._filler = None
        for p in self._frozen:
            subprocess.run(["chattr", "-i", str(p)], check=False)
        self._frozen = []


def _poll_health(w: WatcherProcess, seconds: float) -> list[tuple[float, int, Any]]:
    """GET /health every 0.25 s for `seconds`: (latency, status, body) of each; status 0 means no answer in 2 s."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.monotonic()
        code, doc = w.status("/health", timeout=2.0)
        out.append((time.monotonic() - start, code, doc))
        time.sleep(0.25)
    return out


def _chain_messages(telegram: TelegramStandIn) -> list[tuple[str, float]]:
    """("degraded"|"recovered", arrival) of each chain message, in order."""
    out = []
    for r in telegram.received:
        first = r.text.splitlines()[0]
        if DEGRADED in first:
            out.append(("degraded", r.at))
        elif RECOVERED in first:
            out.append(("recovered", r.at))
    return out


def _unpaired(kinds: list[str]) -> bool:
    """Whether some "recovered" came without a "degraded" before it that no other "recovered" answered."""
    open_ = False
    for kind in kinds:
        if kind == "recovered" and not open_:
            return True
        open_ = kind == "degraded"
    return False


def _health_problems(polls: list[tuple[float, int, Any]], what: str) -> list[str]:
    """What /health got wrong during a database fault: no answer within 2 s, no storage field, storage never bad."""
    problems = []
    slow = [(round(lat, 2), code) for lat, code, _ in polls if code != 200]
    if slow:
        problems.append(f"/health did not answer within 2 s during the {what} in {len(slow)} of {len(polls)} polls")
    answered = [doc for _, code, doc in polls if code == 200]
    if any("storage" not in doc for doc in answered):
        problems.append(f"/health has no storage field: {sorted(answered[0])}")
    elif not any(doc["storage"]["ok"] is False for doc in answered):
        problems.append(f"/health never reported storage trouble during the {what}")
    return problems


def _soon(predicate: Any, timeout: float) -> Any:
    """wait_for, but None instead of a failure: the test collects every problem before it fails."""
    try:
        return wait_for(predicate, timeout)
    except AssertionError:
        return None


@pytest.mark.parametrize("kind", ["locked", "full", "readonly"])
def test_db_fault_while_the_chain_breaks_keeps_the_degraded_alert(
    run_setup: RunSetup, request: pytest.FixtureRequest, kind: str
) -> None:
    """The chain breaks while the database takes no writes: the degraded alert is sent once the database heals."""
    s = run_setup
    db = (request.getfixturevalue("small_disk") if kind == "full" else s.tmp_path) / "watcher.db"
    node = SwitchableNode(s.anvil.url).start()
    fault = DbFault(kind, db)
    problems: list[str] = []
    try:
        cfg = s.write_config({"storage": {"path": str(db)}}, rpc_urls=[node.url], interval=INTERVAL)
        w = s.start(cfg)
        wait_for(lambda: w.logs("check", chain="local"), 30, what="a first good check")
        assert w.get("/health")["chains"]["local"]["degraded"] is False and s.telegram.received == []

        fault.apply()
        node.down = True
        broke = time.monotonic()
        polls = _poll_health(w, FAULT_SECONDS)
        fault.clear()
        cleared = time.monotonic()
        problems += _health_problems(polls, f"{kind} database")
        errors = {(e["msg"], str(e.get("exc") or e.get("error") or "")[:80]) for e in w.logs() if e["level"] == "error"}
        print(f"{kind}: errors logged during the fault: {sorted(errors)}")

        degraded = _soon(lambda: [m for m in _chain_messages(s.telegram) if m[0] == "degraded"], AFTER_CLEAR_BOUND)
        if degraded:
            at = degraded[0][1]
            print(f"{kind}: degraded {at - broke:.2f} s after the break, {at - cleared:.2f} s after the fault cleared")
            health = w.get("/health")
            if health.get("storage", {}).get("ok") is not True:
                problems.append(f"/health storage after the fault cleared: {health.get('storage')}")
            if health["status"] == "ok" or health["chains"]["local"]["degraded"] is not True:
                problems.append(f"/health while the chain is down: {health['status']}, {health['chains']['local']}")
            levels = {p["level"] for p in w.get("/positions")["positions"]}
            if levels != {"unknown"}:
                problems.append(f"/positions levels while the chain is down: {levels}")
        else:
            problems.append(f"no degraded alert within {AFTER_CLEAR_BOUND} s of the {kind} database healing")

        node.down = False
        _soon(lambda: any(k == "recovered" for k, _ in _chain_messages(s.telegram)), 15)
        time.sleep(4 * INTERVAL)  # a duplicate would come now
        kinds = [k for k, _ in _chain_messages(s.telegram)]
        if kinds != ["degraded", "recovered"]:
            problems.append(f"chain messages {kinds} (want one degraded, then one recovered)")
        if _unpaired(kinds):
            problems.append("a recovered arrived without its degraded before it")
        if w.get("/health")["status"] != "ok":
            problems.append("/health is not ok after the chain came back")
    finally:
        fault.clear()
        s.cleanup()  # before the tmpfs goes: a running daemon holds it busy
        node.stop()
    assert not problems, problems


def test_locked_db_while_the_position_becomes_liquidatable(run_setup: RunSetup) -> None:
    """The position turns liquidatable while another writer holds the database: its alert comes once, after."""
    s = run_setup
    fault = DbFault("locked", s.db_path)
    problems: list[str] = []
    try:
        w = s.start(s.write_config(interval=INTERVAL))
        wait_for(lambda: w.logs("check", chain="local"), 30, what="a first good check")
        fault.apply()
        set_price(s.market, "WETH", 1_400)  # health 0.9625
        polls = _poll_health(w, FAULT_SECONDS)
        fault.clear()
        cleared = time.monotonic()
        problems += _health_problems(polls, "locked database")
        msgs = _soon(lambda: [r for r in s.telegram.received if "LIQUIDATABLE" in r.text], AFTER_CLEAR_BOUND)
        if msgs:
            print(f"locked: liquidatable alert {msgs[0].at - cleared:.2f} s after the lock was released")
        else:
            problems.append(f"no liquidatable alert within {AFTER_CLEAR_BOUND} s of the lock's release")
        time.sleep(4 * INTERVAL)
        lines = first_lines(s.telegram)
        if sum("LIQUIDATABLE" in t for t in lines) != 1 or any(DEGRADED in t or RECOVERED in t for t in lines):
            problems.append(f"messages: {lines} (want one liquidatable)")
    finally:
        fault.clear()
    assert not problems, problems


# --- a burst of alerts -----------------------------------------------------------------------------------------


def _check_starts(w: WatcherProcess) -> list[float]:
    """Wall-clock start of every check of chains.local: the log line's time minus the check's duration."""
    return [e["ts"] - float(e.get("seconds") or 0.0) for e in w.logs("check", chain="local")]


def test_a_50_message_burst_delays_no_check_and_a_liquidation_jumps_the_queue(run_setup: RunSetup) -> None:
    """51 warns queue at Telegram's 1 message/s; checks keep their cadence and a new liquidation goes out first."""
    s = run_setup
    m = s.market
    users = [s.borrower, *open_borrowers(m, 50)]
    late = m.open_position(None, {"WBTC": 1 * 10**8}, {"USDC": 30_000 * 10**6})  # health 1.5, WBTC only
    cfg = s.write_config(
        {
            "notify": {"telegram": {"min_interval": 1.0}},
            "alerts": {"falling_drop": 10},  # one message per position: the burst is 51 warns, no "falling fast"
            "accounts": [
                *({"address": u, "label": f"user{i}"} for i, u in enumerate(users)),
                {"address": late, "label": "late"},
            ],
        },
        interval=INTERVAL,
    )
    w = s.start(cfg)
    wait_for(lambda: w.logs("check", chain="local"), 30, what="a first good check")
    assert s.telegram.received == []

    set_price(m, "WETH", 1_700)  # every WETH borrower: health 1.169, warn
    wait_for(lambda: s.telegram.received, 10, what="the burst to start")
    burst_start = time.time()
    time.sleep(3.0)
    set_price(m, "WBTC", 35_000)  # the late position only: health 0.875, liquidatable
    priced = time.monotonic()
    late_msgs = _soon(
        lambda: [r for r in s.telegram.received if "LIQUIDATABLE" in r.text and " · late · " in r.text], 8.0
    )
    time.sleep(max(0.0, burst_start + 12.0 - time.time()))  # keep watching the cadence while the burst drains
    burst_end = time.time()

    starts = [t for t in _check_starts(w) if burst_start - 1.0 <= t <= burst_end]
    # The end of the window counts as a start: a silence at the end is a gap too.
    gaps = [round(b - a, 3) for a, b in itertools.pairwise([*starts, burst_end])]
    print(f"check starts during the burst (s from its start): {[round(t - burst_start, 2) for t in starts]}")
    print(f"gaps: {gaps}")
    problems = []
    if len(starts) < (burst_end - burst_start) / (2 * INTERVAL):
        problems.append(f"{len(starts)} checks in {burst_end - burst_start:.1f} s of burst (interval {INTERVAL} s)")
    if max(gaps, default=burst_end - burst_start) > 2 * INTERVAL + 0.5:
        problems.append(f"a check gap of {max(gaps, default=0):.1f} s during the burst (bound {2 * INTERVAL + 0.5} s)")
    if not late_msgs:
        problems.append("the new liquidation was not alerted within 8 s of its block")
    else:
        latency = late_msgs[0].at - priced
        warns_before = sum("WARN" in t for t in first_lines(s.telegram)[: s.telegram.received.index(late_msgs[0])])
        print(f"liquidatable alert {latency:.2f} s after its block, after {warns_before} of {len(users)} warns")
        if latency >= 3.0:
            problems.append(f"the liquidatable alert came {latency:.1f} s after its block (bound 3 s)")
        # Worse goes first: at 1 message/s the 51 warns cannot have drained in the ~4 s before it.
        if warns_before >= len(users) - 5:
            problems.append(f"the liquidatable alert waited behind {warns_before} warns")
    assert not problems, problems


# --- SIGKILL in a burst ---------------------------------------------------------------------------------------


def test_sigkill_during_a_burst_loses_nothing_and_duplicates_only_with_the_same_ref(run_setup: RunSetup) -> None:
    """kill -9 while messages go out, start again: every alert arrives, a repeat only as the same `ref:`."""
    s = run_setup
    m = s.market
    users = [s.borrower, *open_borrowers(m, 15)]
    s.accounts = users
    s.telegram.delay = 0.2  # each send takes a while, so the kill lands with one in flight
    cfg = s.write_config(
        {"notify": {"telegram": {"min_interval": 0.25}}, "alerts": {"falling_drop": 10}}, interval=INTERVAL
    )
    w = s.start(cfg)
    wait_for(lambda: w.logs("check", chain="local"), 30, what="a first good check")
    set_price(m, "WETH", 1_700)
    wait_for(lambda: len(s.telegram.requests) >= 5, 20, every=0.01, what="five sends")
    time.sleep(0.12)  # the sixth is at the stand-in now, unanswered (0.25 s pacing, 0.2 s answer delay)
    w.kill()
    time.sleep(0.5)  # let the stand-in finish the request the dead process left behind
    at_kill = len(s.telegram.received)
    assert at_kill < len(users), "the burst was over before the kill"

    w2 = s.start(cfg)
    expected = {f"user{i}" for i in range(len(users))}

    def labels() -> set[str]:
        return {t.split(" · ")[1] for t in first_lines(s.telegram) if "WARN" in t}

    wait_for(lambda: labels() >= expected, 30, what="every warn after the restart")
    time.sleep(4 * INTERVAL)
    assert w2.alive()
    by_ref: dict[str, set[str]] = {}
    label_refs: dict[str, set[str]] = {}
    for r in s.telegram.received:
        ref = ref_of(r.text)
        assert ref is not None, r.text
        by_ref.setdefault(ref, set()).add(r.text)
        label_refs.setdefault(r.text.splitlines()[0].split(" · ")[1], set()).add(ref)
    counts = Counter(ref_of(r.text) for r in s.telegram.received)
    dups = {ref: n for ref, n in counts.items() if n > 1}
    print(f"{len(s.telegram.received)} messages, {at_kill} before the kill, duplicates: {dups}")
    assert set(label_refs) == expected
    assert all(len(refs) == 1 for refs in label_refs.values()), label_refs  # one alert per position, no new one
    assert all(len(texts) == 1 for texts in by_ref.values())  # a duplicate is the same message, same ref
    assert all(n <= 2 for n in counts.values()), dups


# --- a messaging outage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_max", [0.5, 2.0])
def test_a_telegram_outage_16_times_retry_max_loses_nothing_and_folds_to_the_newest(
    run_setup: RunSetup, retry_max: float
) -> None:
    """Telegram answers 502 for 8 s while one position goes warn, critical, liquidatable and another warn.

    Nothing is given up: once Telegram is back the user gets each position's newest state once, the worse first, with
    a line counting the folded updates; the folded rows read "superseded" in /alerts. Attempts during the outage are
    spaced by the configured notify.retry_max (the config's effect: 0.5 s against 2 s).
    """
    s = run_setup
    m = s.market
    calm = m.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 10_000 * 10**6})  # warns only at $1,400 (1.155)
    s.accounts = [s.borrower, calm]
    outage = 8.0
    cfg = s.write_config(
        {"notify": {"retry_initial": 0.1, "retry_max": retry_max}, "alerts": {"falling_drop": 10}},
        interval=INTERVAL,
    )
    w = s.start(cfg)
    wait_for(lambda: w.logs("check", chain="local"), 30, what="a first good check")
    assert s.telegram.received == []

    s.telegram.down(outage, 502)
    t0 = time.monotonic()
    for price in (1_700, 1_550, 1_400):  # user0: warn 1.169, critical 1.066, liquidatable 0.9625
        set_price(m, "WETH", price)
        time.sleep(4 * INTERVAL)
    stored = w.get("/alerts")["alerts"]
    assert time.monotonic() - t0 < outage, "the price moves outlasted the outage: the test proves nothing"
    assert s.telegram.received == []
    levels = sorted((a["level"], a["position"].split(":")[-1].lower()) for a in stored)
    print(f"retry_max {retry_max}: stored during the outage: {levels}")

    got = wait_for(lambda: len(s.telegram.received) >= 2 and s.telegram.received, outage + 10, what="delivery")
    time.sleep(4 * INTERVAL + retry_max)  # a late or duplicate message would come now
    lines = first_lines(s.telegram)
    texts = [r.text for r in s.telegram.received]
    back = got[0].at - (t0 + outage)
    attempts = [r.at for r in s.telegram.requests if t0 <= r.at <= t0 + outage]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    print(f"retry_max {retry_max}: {len(attempts)} attempts in the {outage:.0f} s outage, gaps up to {max(gaps):.2f} s")
    print(f"retry_max {retry_max}: first message {back:.2f} s after Telegram came back: {lines}")

    assert len(lines) == 2, lines
    assert "LIQUIDATABLE" in lines[0] and " · user0 · " in lines[0], lines  # the worse first
    assert "WARN" in lines[1] and " · user1 · " in lines[1], lines
    assert "2 earlier updates for this position were folded" in texts[0] and "the worst: CRITICAL" in texts[0]
    assert "folded" not in texts[1]
    assert back <= retry_max + 2 * INTERVAL + 1.0, f"first message {back:.2f} s after the outage"
    # notify.retry_initial (0.1 s) spaces the first retry, each wait doubles, and the configured cap holds them:
    # never more than it apart, and the larger cap is reached.
    assert gaps[0] <= 0.1 + 0.3 and gaps[1] >= gaps[0], gaps[:4]
    assert max(gaps) <= retry_max + 0.4, gaps
    if retry_max >= 2.0:
        assert max(gaps) >= retry_max - 0.5, gaps
    else:
        assert len(attempts) >= outage / (retry_max + 0.4) - 1, attempts

    by_level: dict[str, list[str]] = {}
    for a in w.get("/alerts")["alerts"]:
        if s.borrower.lower() in a["position"].lower():
            for d in a["deliveries"]:
                by_level.setdefault(a["level"], []).append(d["status"])
    print(f"retry_max {retry_max}: user0's deliveries by level: {by_level}")
    assert by_level.get("warn") == ["superseded"] and by_level.get("critical") == ["superseded"], by_level
    assert by_level.get("liquidatable") == ["delivered"], by_level
    assert sum("LIQUIDATABLE" in t for t in lines) == 1 and len(set(refs_of(texts))) == len(texts)


def refs_of(texts: list[str]) -> list[str | None]:
    """The `ref:` of each message."""
    return [ref_of(t) for t in texts]


@pytest.mark.parametrize(("channel", "timeout"), [("telegram", 1.0), ("telegram", 3.0), ("email", 1.0), ("email", 3.0)])
def test_a_stuck_channel_is_cut_at_its_configured_timeout(run_setup: RunSetup, channel: str, timeout: float) -> None:
    """notify.<channel>.timeout bounds one send: a stalled Telegram answer or a silent SMTP greeting is given up after
    it and retried (retry_initial 0.2 s later); a stuck SMTP server never holds back the Telegram message."""
    s = run_setup
    overrides: dict[str, Any] = {"notify": {"retry_initial": 0.2, "retry_max": 1.0}}
    smtp = StuckSMTP("silent").start() if channel == "email" else None
    try:
        if smtp is not None:
            overrides["notify"]["email"] = {
                "host": "127.0.0.1",
                "port": smtp.port,
                "security": "none",
                "sender": "watcher@localhost",
                "recipients": ["me@localhost"],
                "timeout": timeout,
            }
        else:
            overrides["notify"]["telegram"] = {"timeout": timeout}
            s.telegram.stall(1)
        w = s.start(s.write_config(overrides, interval=INTERVAL))
        wait_for(lambda: w.logs("check", chain="local"), 30, what="a first good check")
        set_price(s.market, "WETH", 1_400)
        priced = time.monotonic()
        if smtp is not None:
            wait_for(lambda: len(smtp.connected_at) >= 2, timeout + 10, what="a second SMTP attempt")
            first, second = smtp.connected_at[:2]
            got = wait_for(lambda: s.telegram.received, 5, what="the Telegram message")
            print(
                f"email timeout {timeout}: retried {second - first:.2f} s after the first try;"
                f" Telegram got it {got[0].at - priced:.2f} s after the block"
            )
            assert got[0].at - priced <= 3.0, "the stuck SMTP server held the Telegram message back"
        else:
            got = wait_for(lambda: s.telegram.received, timeout + 10, what="delivery after the stalled answer")
            first, second = s.telegram.requests[0].at, s.telegram.requests[1].at
            print(f"telegram timeout {timeout}: retried {second - first:.2f} s after the stalled try")
            assert len(got) == 1 and "LIQUIDATABLE" in got[0].text
        assert timeout <= second - first <= timeout + 0.2 + 1.0, f"retried {second - first:.2f} s after the first try"
        assert w.alive()
    finally:
        if smtp is not None:
            smtp.stop()


def test_a_hung_smtp_server_never_holds_back_a_new_telegram_alert(run_setup: RunSetup) -> None:
    """SMTP hangs each attempt for its 4 s timeout; a warn goes out, then the position turns liquidatable while the
    email send hangs: Telegram gets the liquidatable alert within 1.5 s of its block (each channel has its own loop)."""
    s = run_setup
    smtp = StuckSMTP("silent").start()
    try:
        email = {"host": "127.0.0.1", "port": smtp.port, "security": "none", "timeout": 4.0}
        email |= {"sender": "watcher@localhost", "recipients": ["me@localhost"]}
        cfg = s.write_config(
            {"notify": {"retry_initial": 0.2, "retry_max": 1.0, "email": email}, "alerts": {"falling_drop": 10}},
            interval=INTERVAL,
        )
        w = s.start(cfg)
        wait_for(lambda: w.logs("check", chain="local"), 30, what="a first good check")
        set_price(s.market, "WETH", 1_700)  # warn
        wait_for(lambda: s.telegram.received, 5, what="the warn at Telegram")
        wait_for(lambda: smtp.connections >= 1, 5, what="the email attempt that hangs")
        time.sleep(0.5)
        set_price(s.market, "WETH", 1_400)  # liquidatable, while the SMTP attempt still hangs
        priced = time.monotonic()
        got = wait_for(lambda: [r for r in s.telegram.received if "LIQUIDATABLE" in r.text], 6, what="the liquidation")
        print(f"hung SMTP: liquidatable at Telegram {got[0].at - priced:.2f} s after its block")
        assert got[0].at - priced <= 1.5, f"Telegram waited {got[0].at - priced:.2f} s behind the hung SMTP server"
    finally:
        s.cleanup()
        smtp.stop()


def test_a_telegram_that_refuses_every_message_makes_health_degraded(run_setup: RunSetup) -> None:
    """Telegram answers 400 (chat not found) to everything: the alert is given up on, so /health is degraded and
    names the channel and its error; once Telegram takes messages again, the next alert clears it."""
    s = run_setup
    s.accounts = [s.borrower, s.market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 10_000 * 10**6})]
    w = s.start(s.write_config({"alerts": {"falling_drop": 10}}, interval=INTERVAL))
    wait_for(lambda: w.logs("check", chain="local"), 30, what="a first good check")
    assert w.get("/health")["status"] == "ok"
    s.telegram.answer_next(400, 100, description="Bad Request: chat not found")
    set_price(s.market, "WETH", 1_700)  # user0 warns
    health = wait_for(lambda: (h := w.get("/health"))["status"] == "degraded" and h, 10, what="/health degraded")
    print(f"refusing Telegram: /health notify = {health['notify']}")
    tg = health["notify"]["telegram"]
    assert tg["ok"] is False and tg["gave_up"] is True and "chat not found" in tg["last_error"]
    assert not health["chains"]["local"]["degraded"]  # the chain is fine: the channel is what is not
    s.telegram.clear()
    set_price(s.market, "WETH", 1_400)  # user1 warns now too (user0 liquidatable): delivered
    wait_for(lambda: s.telegram.received, 10, what="a delivery once Telegram takes messages")
    wait_for(lambda: w.get("/health")["status"] == "ok", 5, what="/health ok after a delivery")
    assert w.get("/health")["notify"]["telegram"]["ok"] is True


def test_a_configured_chain_no_account_uses_never_reads_as_stale(run_setup: RunSetup) -> None:
    """A second chain in the config that no deployment lists is never checked, and /health stays ok past its
    stale_after (it used to be degraded for ever)."""
    s = run_setup
    parts = s.parts(interval=INTERVAL)
    parts["chains"]["spare"] = dict(parts["chains"]["local"]) | {"stale_after": 2.0}
    cfg = write_toml(s.tmp_path / "spare.toml", parts)
    w = s.start(cfg)
    wait_for(lambda: w.logs("check", chain="local"), 30, what="a first good check")
    time.sleep(3.0)
    health = w.get("/health")
    assert health["status"] == "ok" and "spare" not in health["chains"], health
