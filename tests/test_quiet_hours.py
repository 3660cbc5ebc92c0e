"""Quiet hours with the clock under the test's control: a daemon built from a config file (the same construction as
`watcher run`), held rows released when the period ends, in the usual order; and the period arithmetic itself."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests import run_harness
from tests.run_harness import RunSetup, ref_of, set_price
from watcher.chain import ChainClient
from watcher.check import build
from watcher.cli import channels_for
from watcher.config import load_config
from watcher.daemon import Daemon
from watcher.notify.quiet import QuietHours
from watcher.store import Store

run_market = run_harness.run_market
run_setup = run_harness.run_setup
telegram_standin = run_harness.telegram_standin

BERLIN = ZoneInfo("Europe/Berlin")


class Clock:
    """The daemon's and the relay's clock."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _at(year: int, month: int, day: int, hour: int, minute: int, tz: ZoneInfo = BERLIN) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=tz).timestamp()


def test_rows_held_overnight_go_out_when_the_quiet_period_ends(run_setup: RunSetup) -> None:
    """22:00-07:00 Europe/Berlin: a warn at 23:30 and a critical at 02:00 wait (never attempted); at 07:00 both go,
    the position's rows in their order; a liquidatable at 23:40 the next night goes at once."""
    asyncio.run(_overnight(run_setup))


async def _overnight(s: RunSetup) -> None:
    now = datetime.now(BERLIN)
    night = datetime(now.year, now.month, now.day, 23, 30, tzinfo=BERLIN)
    morning = (night + timedelta(days=1)).replace(hour=7, minute=0).timestamp()
    clock = Clock(night.timestamp())
    cfg_path = s.write_config(
        {
            "notify": {"telegram": {"quiet_hours": "22:00-07:00", "quiet_tz": "Europe/Berlin"}},
            "alerts": {"falling_drop": 10},
        }
    )
    cfg = load_config(cfg_path)
    clients = {"local": ChainClient.from_config("local", cfg.chains["local"])}
    d = Daemon(cfg, clients, build(cfg), Store(cfg.storage.path), channels_for(cfg), clock=clock)
    try:
        await d.run_chain("local")
        set_price(s.market, "WETH", 1_700)  # warn
        await d.run_chain("local")
        await d.relay_now()
        clock.t += 2.5 * 3600  # 02:00
        set_price(s.market, "WETH", 1_550)  # critical
        await d.run_chain("local")
        await d.relay_now()
        assert s.telegram.requests == []
        assert d.relay.next_due_at() == morning  # the relay sleeps until then, no attempt before
        clock.t = morning - 1
        await d.relay_now()
        assert s.telegram.requests == []
        clock.t = morning
        await d.relay_now()
        kinds = [(ref_of(r.text) or "").rsplit(":", 1)[-1] for r in s.telegram.received]
        assert kinds == ["warn", "critical"]
        assert d.relay.health["telegram"]["failures"] == 0
        clock.t = (night + timedelta(days=1, minutes=10)).timestamp()  # 23:40 that evening: quiet again
        set_price(s.market, "WETH", 1_400)  # liquidatable
        await d.run_chain("local")
        await d.relay_now()
        assert [(ref_of(r.text) or "").rsplit(":", 1)[-1] for r in s.telegram.received][-1] == "liquidatable"
    finally:
        for ch in d.channels.values():
            await ch.close()
        for c in clients.values():
            await c.close()


def test_a_period_across_midnight_and_its_end() -> None:
    q = QuietHours("22:00-07:00", "Europe/Berlin")
    assert q.until(_at(2027, 1, 14, 21, 59)) is None
    assert q.until(_at(2027, 1, 14, 22, 0)) == _at(2027, 1, 15, 7, 0)
    assert q.until(_at(2027, 1, 15, 6, 59)) == _at(2027, 1, 15, 7, 0)
    assert q.until(_at(2027, 1, 15, 7, 0)) is None
    day = QuietHours("12:00-13:30")
    assert day.until(_at(2027, 1, 15, 12, 15, ZoneInfo("UTC"))) == _at(2027, 1, 15, 13, 30, ZoneInfo("UTC"))
    assert day.until(_at(2027, 1, 15, 11, 59, ZoneInfo("UTC"))) is None


def test_the_period_ends_at_the_written_hour_across_a_clock_change() -> None:
    """On the night Berlin's clocks go forward (28 March 2027), 22:00-07:00 lasts 8 hours, and ends at 07:00 CEST."""
    q = QuietHours("22:00-07:00", "Europe/Berlin")
    start = _at(2027, 3, 27, 22, 0)
    end = q.until(start)
    assert end == datetime(2027, 3, 28, 5, 0, tzinfo=UTC).timestamp()
    assert end is not None and end - start == 8 * 3600
