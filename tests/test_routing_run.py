"""Routing by level and quiet hours under the real `watcher run --config`: which channel gets which alert, what a
recovery follows, what waits in quiet hours and what never does (liquidatable, degraded)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests import run_harness
from tests.apprise_standin import HookStandIn
from tests.processes import WatcherProcess, wait_for
from tests.run_harness import RunSetup, ref_of, set_price
from tests.smtp_servers import RecordingHandler
from tests.switchable_node import SwitchableNode

run_market = run_harness.run_market
run_setup = run_harness.run_setup
telegram_standin = run_harness.telegram_standin

INTERVAL = 0.5
HOOK_ENV = "MW_TEST_HOOK_URL"


@pytest.fixture
def hook() -> Iterator[HookStandIn]:
    server = HookStandIn().start()
    yield server
    server.stop()


def kind(text: str) -> str:
    """What a message is, from its ref line: warn, liquidatable, recovered, chain degraded, chain recovered ..."""
    ref = ref_of(text) or ""
    last = ref.rsplit(":", 1)[-1]
    return f"chain {last}" if ref.startswith("chain:") else last


def start(s: RunSetup, overrides: dict[str, Any], env: dict[str, str], **chain: Any) -> WatcherProcess:
    w = WatcherProcess(s.write_config(overrides | {"alerts": {"falling_drop": 10}}, interval=INTERVAL, **chain), env)
    s._procs.append(w)
    w.start()
    wait_for(lambda: w.logs("check", chain="local"), 30, what="a first good check")
    return w


def test_each_channel_gets_its_levels_and_the_recoveries_of_what_it_got(
    run_setup: RunSetup, hook: HookStandIn, smtp: RecordingHandler
) -> None:
    """Email gets only warn, Telegram everything, the apprise pager only liquidatable and degraded; each gets the
    recovery of an episode it heard of, and nothing else (email hears nothing of the node outage)."""
    s = run_setup
    node = SwitchableNode(s.anvil.url).start()
    try:
        email = {"host": "127.0.0.1", "port": smtp.port, "security": "none", "levels": ["warn"]}  # type: ignore[attr-defined]
        email |= {"sender": "watcher@localhost", "recipients": ["me@localhost"]}
        pager = {"name": "pager", "url": {"env": HOOK_ENV}, "levels": ["liquidatable", "degraded"]}
        notify = {"retry_initial": 0.3, "retry_max": 1.0, "email": email, "apprise": [pager]}
        start(s, {"notify": notify}, {HOOK_ENV: hook.json_url("pager")}, rpc_urls=[node.url])

        def tg() -> list[str]:
            return [kind(r.text) for r in s.telegram.received]

        def mail() -> list[str]:
            return [kind(m.body) for m in smtp.mails]

        def pages() -> list[str]:
            return [kind(t) for t in hook.texts()]

        set_price(s.market, "WETH", 1_700)  # warn
        wait_for(lambda: tg() == ["warn"] and mail() == ["warn"], 10, what="the warn by Telegram and email")
        set_price(s.market, "WETH", 1_400)  # liquidatable
        wait_for(lambda: tg()[-1:] == ["liquidatable"] and pages() == ["liquidatable"], 10, what="the liquidation")
        set_price(s.market, "WETH", 2_000)  # healthy again: one recovery, to all three (each got a part of it)
        wait_for(lambda: len(tg()) == 3 and len(mail()) == 2 and len(pages()) == 2, 10, what="the recoveries")
        node.down = True
        wait_for(lambda: "chain degraded" in tg() and "chain degraded" in pages(), 15, what="degraded")
        node.down = False
        wait_for(lambda: "chain recovered" in tg() and "chain recovered" in pages(), 15, what="recovered")
        time.sleep(1.5)  # anything misrouted would have arrived by now
        assert tg() == ["warn", "liquidatable", "recovered", "chain degraded", "chain recovered"]
        assert mail() == ["warn", "recovered"]
        assert pages() == ["liquidatable", "recovered", "chain degraded", "chain recovered"]
    finally:
        node.stop()


def _period_around_now(minutes_before: int, minutes_after: int, tz: str = "UTC") -> str:
    """A quiet_hours value covering the present minute (in UTC)."""
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=minutes_before), now + timedelta(minutes=minutes_after)
    return f"{start:%H:%M}-{end:%H:%M}"


def test_quiet_hours_hold_a_warn_but_never_a_liquidation(run_setup: RunSetup, hook: HookStandIn) -> None:
    """Telegram is in its quiet hours (a period around now): the warn waits, not attempted and not a failure, while
    the apprise channel without quiet hours gets it at once; the position then turns liquidatable, and Telegram
    gets its queue at once, in order: the warn, then the liquidation."""
    s = run_setup
    quiet = {"quiet_hours": _period_around_now(60, 120)}
    notify = {"telegram": quiet, "apprise": [{"url": {"env": HOOK_ENV}}]}
    w = start(s, {"notify": notify}, {HOOK_ENV: hook.json_url()})
    set_price(s.market, "WETH", 1_700)  # warn
    wait_for(lambda: hook.texts(), 10, what="the warn at the channel without quiet hours")
    time.sleep(2.0)  # several relay passes
    assert s.telegram.received == [] and s.telegram.requests == []
    held = [d for a in w.get("/alerts")["alerts"] for d in a["deliveries"] if d["channel"] == "telegram"]
    assert [(d["status"], d["attempts"]) for d in held] == [("pending", 0)]
    health = w.get("/health")
    assert health["status"] == "ok" and health["notify"]["telegram"]["failures"] == 0
    priced = time.monotonic()
    set_price(s.market, "WETH", 1_400)  # liquidatable: never held
    wait_for(lambda: len(s.telegram.received) == 2, 5, what="the queue at Telegram")
    assert [kind(r.text) for r in s.telegram.received] == ["warn", "liquidatable"]
    assert s.telegram.received[-1].at - priced <= 3.0


def test_quiet_hours_are_read_in_quiet_tz(run_setup: RunSetup, hook: HookStandIn) -> None:
    """Two apprise channels with the same quiet_hours, a period around now on the clocks of UTC+10: the one with
    quiet_tz = "Etc/GMT-10" (POSIX sign: UTC+10) holds the warn, the one on the default UTC sends it at once."""
    s = run_setup
    there = datetime.now(UTC) + timedelta(hours=10)
    period = f"{there - timedelta(minutes=60):%H:%M}-{there + timedelta(minutes=120):%H:%M}"
    far = {"name": "far", "url": {"env": HOOK_ENV}, "quiet_hours": period, "quiet_tz": "Etc/GMT-10"}
    here = {"name": "here", "url": {"env": "MW_TEST_HOOK_URL2"}, "quiet_hours": period}
    env = {HOOK_ENV: hook.json_url("far"), "MW_TEST_HOOK_URL2": hook.json_url("here")}
    w = start(s, {"notify": {"apprise": [far, here]}}, env)
    set_price(s.market, "WETH", 1_700)
    wait_for(lambda: hook.texts("/here"), 10, what="the warn where it is not quiet")
    time.sleep(2.0)
    assert hook.texts("/far") == []
    held = [d for a in w.get("/alerts")["alerts"] for d in a["deliveries"] if d["channel"] == "far"]
    assert [(d["status"], d["attempts"]) for d in held] == [("pending", 0)]
