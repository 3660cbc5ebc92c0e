"""The command listener against a broken getUpdates, under `watcher run --config`: alerts still go out, it recovers.

getUpdates down (HTTP 502), hanging (read, never answered), answering garbage (not JSON), the wrong shape (a result
that is not a list) or 429 with a flood wait, and updates whose fields are junk: each while a position turns
critical. The alert must reach the chat as usual, the daemon must live on, and once getUpdates works again a command
is answered.
"""

from __future__ import annotations

import itertools
import time

import pytest

from tests import run_harness
from tests.processes import TOKEN, wait_for
from tests.run_harness import RunSetup, set_price
from tests.telegram_updates import FLOOD_WAIT
from tests.test_faults_run import DbFault
from tests.test_telegram_commands import CHAT, ask, commands_on, log_text, started

run_market = run_harness.run_market
run_setup = run_harness.run_setup
telegram_standin = run_harness.telegram_standin

POLL_TIMEOUT = 1  #: notify.telegram.poll_timeout in these tests
TIMEOUT = 2.0  #: notify.telegram.timeout
BACKOFF_MAX = 2.0  #: notify.retry_max in the harness's config: the listener's longest wait between failed polls
#: a critical alert reaches the chat within this many seconds of the price change (as without the fault)
ALERT_BOUND = 10.0


@pytest.mark.parametrize("fault", ["down", "hang", "garbage", "wrong", "flood"])
def test_a_broken_get_updates_never_holds_back_an_alert_and_the_listener_recovers(
    run_setup: RunSetup, fault: str
) -> None:
    """While getUpdates fails the critical alert is delivered; after the fault, /status is answered again."""
    s = run_setup
    w = started(s, commands_on())
    assert ask(s, "/status").startswith("✅ user0")
    s.telegram.updates.fault(fault)
    began = time.monotonic()
    set_price(s.market, "WETH", 1_500)  # health 1.03: critical
    changed = time.monotonic()
    alert = wait_for(
        lambda: [r for r in s.telegram.received if r.chat_id == CHAT and r.text.startswith("🔴 CRITICAL")],
        ALERT_BOUND,
        what=f"the critical alert while getUpdates is {fault}",
    )[0]
    print(f"{fault}: critical alert {alert.at - changed:.2f} s after the price change")
    # the listener keeps trying through the fault, backing off, without dying
    polls = wait_for(lambda: s.telegram.updates.polls_since(began)[1:], 15, what=f"a second poll while {fault}")
    assert w.alive()
    assert w.logs("telegram commands: getUpdates failed"), w.logs()
    if fault == "hang":
        first, second = s.telegram.updates.polls_since(began)[:2]
        gap = second.at - first.at
        print(f"hang: a hung poll was cut and the next one sent {gap:.2f} s later")
        # cut at poll_timeout + timeout (the configured deadline), then at most the longest backoff
        assert POLL_TIMEOUT + TIMEOUT - 0.2 <= gap <= POLL_TIMEOUT + TIMEOUT + BACKOFF_MAX + 1.5, gap
    else:
        assert all(p.timeout == POLL_TIMEOUT for p in polls), polls
    if fault == "flood":
        # Telegram's flood wait on getUpdates is honoured (and it never held back the alert above)
        seen = s.telegram.updates.polls_since(began)
        gaps = [b.at - a.at for a, b in itertools.pairwise(seen)]
        print(f"flood: polls {', '.join(f'{g:.2f}' for g in gaps)} s apart (retry_after {FLOOD_WAIT} s)")
        assert gaps and min(gaps) >= FLOOD_WAIT - 0.1, gaps
    s.telegram.updates.clear()
    cleared = time.monotonic()
    status = ask(s, "/status", timeout=POLL_TIMEOUT + TIMEOUT + BACKOFF_MAX + 5)
    print(f"{fault}: /status answered {time.monotonic() - cleared:.2f} s after the fault cleared")
    assert status.startswith("🔴 user0 · aave_v3 (aave_local) on local · health 1.03") and status.endswith(
        " · critical"
    ), status
    assert TOKEN not in log_text(w)


def test_junk_updates_are_skipped_and_the_next_command_is_answered(run_setup: RunSetup) -> None:
    """Updates with a message that is not an object, a chat without an id, a text that is a number: all skipped."""
    s = run_setup
    w = started(s, commands_on())
    q = s.telegram.updates
    chat = {"id": int(CHAT)}
    for junk in (
        {"update_id": q.reserve_id(), "message": "not an object"},
        {"update_id": q.reserve_id(), "message": {"chat": "x", "text": "/status"}},
        {"update_id": q.reserve_id(), "message": {"chat": chat, "text": 17}},
        {"update_id": q.reserve_id(), "message": {"chat": {"id": True}, "text": "/status"}},
        {"update_id": q.reserve_id(), "edited_message": {"chat": chat, "text": "/status"}},
        {"update_id": -5, "message": {"chat": chat, "text": "/status"}},
    ):
        q.push_raw(junk)
    assert ask(s, "/help").startswith("Margin Watcher commands:")
    assert len(s.telegram.sent_to(CHAT)) == 1  # nothing answered the junk
    assert ask(s, "/ack \ud800") == "argument: not valid UTF-8"  # JSON's lone surrogate escape
    assert w.alive()


def test_updates_without_a_usable_id_do_not_make_the_listener_spin(run_setup: RunSetup) -> None:
    """A getUpdates that keeps handing out items it cannot confirm is polled at the backoff pace, not in a loop."""
    s = run_setup
    w = started(s, commands_on())
    s.telegram.updates.push_raw("not an update")  # no update_id: no offset confirms it, it comes back every time
    began = time.monotonic()
    time.sleep(4.0)
    polls = s.telegram.updates.polls_since(began)
    print(f"junk: {len(polls)} polls in 4 s")
    assert 1 <= len(polls) <= 4.0 / BACKOFF_MAX + 2, polls
    assert w.logs("telegram commands: getUpdates answered no usable update") and w.alive()
    set_price(s.market, "WETH", 1_500)
    wait_for(lambda: [t for t in s.telegram.sent_to(CHAT) if t.startswith("🔴 CRITICAL")], ALERT_BOUND, what="alert")


def test_a_locked_database_makes_mute_answer_that_it_failed(run_setup: RunSetup) -> None:
    """Another writer holds the database: /mute says the database refused it; once free, /mute works."""
    s = run_setup
    w = started(s, commands_on())
    fault = DbFault("locked", s.db_path)
    try:
        fault.apply()
        answer = ask(s, "/mute all 1h")
    finally:
        fault.clear()
    assert answer == "/mute failed: the database refused it (database is locked); try again", answer
    assert ask(s, "/mute all 1h").startswith("🔕 Muted all accounts until ")
    assert [x["account"] for x in w.get("/silences")["silences"]] == [s.borrower]
    assert w.alive()
