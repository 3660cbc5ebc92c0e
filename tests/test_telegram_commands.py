"""Telegram commands through `watcher run --config`: what a user types to the bot, what comes back, what changes.

Every test drives the daemon as a subprocess on real Aave v3.0 (anvil), with the Telegram stand-in handing out the
user's messages over getUpdates and recording every sendMessage per chat; state is checked through the HTTP API.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal
from typing import Any

import pytest

from tests import run_harness
from tests.processes import REPO_ROOT, TOKEN, WatcherProcess, child_env, wait_for
from tests.run_harness import RunSetup, ref_of, set_price
from watcher.render import health_text

# The harness's fixtures, found by pytest under these names.
run_market = run_harness.run_market
run_setup = run_harness.run_setup
telegram_standin = run_harness.telegram_standin

CHAT = "42"
OTHER_ALLOWED = "555"
STRANGER = "777"


def commands_on(**telegram: Any) -> dict[str, Any]:
    """Config overrides: commands on, short polls (the defaults wait 25 s per poll)."""
    return {"notify": {"telegram": {"commands": True, "poll_timeout": 1, "timeout": 2.0} | telegram}}


def ask(s: RunSetup, text: str, chat: str = CHAT, timeout: float = 20.0) -> str:
    """Type `text` in `chat` and wait for the bot's next message there."""
    before = len(s.telegram.sent_to(chat))
    s.telegram.updates.push(chat, text)
    return wait_for(lambda: s.telegram.sent_to(chat)[before:], timeout, what=f"an answer to {text!r} in chat {chat}")[0]


def log_text(w: WatcherProcess) -> str:
    """Everything the daemon wrote on stderr, as one string."""
    return json.dumps(w.logs()) + "\n".join(w.other)


def started(s: RunSetup, overrides: dict[str, Any]) -> WatcherProcess:
    """`watcher run` with these overrides, once its first position document is stored."""
    w = s.start(s.write_config(overrides, interval=0.5))
    wait_for(lambda: w.get("/positions")["positions"], 30, what="a first position document")
    return w


def test_status_and_position_answer_the_configured_chats_and_no_other(run_setup: RunSetup) -> None:
    """chat_id and command_chats are answered; a stranger's message gets nothing and its text is never logged."""
    s = run_setup
    s.telegram.chats |= {OTHER_ALLOWED, STRANGER}  # the stand-in would accept a reply there: none must be sent
    w = started(s, commands_on(command_chats=[OTHER_ALLOWED]))
    secret = "/status stranger-secret-words-9f3a"
    s.telegram.updates.push(STRANGER, secret)
    status = ask(s, "/status")
    assert status == "✅ user0 · aave_v3 (aave_local) on local · health 1.3750 · ok", status

    doc = w.get("/positions")["positions"][0]
    answer = ask(s, "/position user0")
    assert answer.startswith("✅ user0 · aave_v3 (aave_local) on local\nHealth 1.3750 · ok · block "), answer
    assert f"id: {doc['id']}" in answer
    assert "Collateral: 10 WETH ($20,000)" in answer and "Debt: 12,000 USDC ($12,000)" in answer, answer
    lp = doc["liquidation_prices"][0]
    price = f"{Decimal(lp['price']):,.2f}".rstrip("0").rstrip(".")  # cents, as alert messages show money
    assert f"WETH liquidates at ${price} (" in answer, (answer, lp)
    assert "To reach 1.5000: " in answer, answer
    assert ask(s, f"/position {doc['id']}") == answer  # by id: the same document
    assert ask(s, f"/position {doc['id'].lower()}") == answer  # a lower-case address means the same, as in the API

    assert ask(s, "/help", chat=OTHER_ALLOWED).startswith("Margin Watcher commands:")
    # the stranger's update came first: it was handled (and ignored) before any of these answers
    assert s.telegram.sent_to(STRANGER) == []
    ignored = w.logs("telegram command from an unknown chat ignored")
    assert [e["chat"] for e in ignored] == [STRANGER], ignored
    assert "stranger-secret-words" not in log_text(w)
    assert TOKEN not in log_text(w)

    # bad input: a short answer naming the bad value, and the daemon answers on
    assert ask(s, "/mute nobody 2h") == "no position or account 'nobody'; /status lists them"
    assert ask(s, "/mute all 400d") == "duration: '400d' is more than 366 days ahead"
    assert ask(s, "/mute all soon").startswith("'soon' is not a duration")
    assert ask(s, "/mute all").startswith("usage: /mute <label|all> <duration>")
    assert ask(s, "/position nobody") == "no position or account 'nobody'; /status lists them"
    assert ask(s, "/ack no-such-alert").startswith("no alert 'no-such-alert'")
    assert ask(s, "/frobnicate now") == "unknown command /frobnicate; /help lists them"
    assert ask(s, "/simulate ETH down").startswith("'down' is not a change in percent like -20%")
    # the what-if engine over the daemon's latest positions: ETH means the WETH the position holds
    sim = ask(s, "/simulate ETH -20%")
    api = w.get(f"/positions/{doc['id']}/simulate?shock=WETH:-20")["positions"][0]
    assert sim.startswith("What if WETH-20% (exact, on each protocol's own check):"), sim
    expected = f"user0 aave_local/local: 1.3750 -> {health_text(api['health_after']['raw'])} {api['level_after']}"
    assert expected in sim and api["level_after"] == "critical", (sim, api)
    assert "restores the target" in sim, sim
    assert ask(s, "/simulate DOGE -20%").startswith("/simulate: "), "an asset no position holds is named"
    assert w.get("/silences")["silences"] == []  # no bad command changed anything
    old = ask_old(s, "/mute all 1h")
    assert "was sent while the watcher was not running" in old and w.get("/silences")["silences"] == []
    assert w.alive()


def ask_old(s: RunSetup, text: str) -> str:
    """A command sent an hour ago (as if typed while the daemon was down)."""
    before = len(s.telegram.sent_to(CHAT))
    s.telegram.updates.push(CHAT, text, date=time.time() - 3600)
    return wait_for(lambda: s.telegram.sent_to(CHAT)[before:], 20, what="an answer to an old command")[0]


def test_mute_stops_an_alert_until_it_expires_and_ack_marks_it(run_setup: RunSetup) -> None:
    """/mute all 5s: the warn alert is stored, not sent; after expiry the critical one goes out; /ack marks it."""
    s = run_setup
    w = started(s, commands_on())
    assert ask(s, "/mute user0 1h").startswith("🔕 Muted user0 until ")
    silences = w.get("/silences")["silences"]
    assert [x["account"] for x in silences] == [s.borrower], silences
    assert ask(s, "/unmute user0") == "🔔 Unmuted user0: 1 silence(s) ended."
    assert w.get("/silences")["silences"] == []

    mute = ask(s, "/mute all 5s")
    muted_at = time.monotonic()
    assert mute.startswith("🔕 Muted all accounts until "), mute
    set_price(s.market, "WETH", 1_800)  # health 1.2375: warn
    warn = wait_for(
        lambda: [a for a in w.get("/alerts")["alerts"] if a["level"] == "warn"], 10, what="the warn alert stored"
    )[0]
    assert time.monotonic() - muted_at < 5.0, "the check came after the mute ended: the test proves nothing"
    assert warn["silenced"] is True and warn["deliveries"] == [], warn
    wait_for(lambda: not w.get("/silences")["silences"], 10, what="the mute to expire")
    time.sleep(1.0)  # a few checks at warn after the mute: warn is not repeated for 6 h, so nothing goes out
    assert not [t for t in s.telegram.sent_to(CHAT) if "WARN" in t.splitlines()[0]]

    set_price(s.market, "WETH", 1_500)  # health 1.03: critical, after the mute: sent
    critical = wait_for(
        lambda: [t for t in s.telegram.sent_to(CHAT) if t.startswith("🔴 CRITICAL")], 15, what="the critical alert"
    )[0]
    ref = ref_of(critical)
    assert ref is not None
    assert ask(s, f"/ack {ref}") == f"✔️ Acknowledged {ref}."
    alert = next(a for a in w.get("/alerts")["alerts"] if a["id"] == ref)
    assert alert["acked_at"] is not None and alert["open"] is False, alert


def test_commands_are_off_unless_configured(run_setup: RunSetup) -> None:
    """notify.telegram.commands defaults to false: no getUpdates at all, and a typed command gets no answer."""
    s = run_setup
    w = started(s, {})
    s.telegram.updates.push(CHAT, "/status")
    time.sleep(3.0)
    assert s.telegram.updates.polls == [] and s.telegram.sent_to(CHAT) == []
    assert w.alive() and not w.logs("telegram commands on")


def test_a_restart_does_not_answer_a_command_twice(run_setup: RunSetup) -> None:
    """The update offset is stored: a restarted daemon asks from the next update, even if Telegram repeats one."""
    s = run_setup
    config = s.write_config(commands_on(), interval=0.5)
    w = s.start(config)
    update_id = s.telegram.updates.push(CHAT, "/help")
    wait_for(lambda: s.telegram.sent_to(CHAT), 20, what="the answer to /help")
    w.stop()
    last = update_id + 1
    # a Telegram that never got the confirmation hands the same update out again
    message = {"message_id": 1, "date": int(time.time()), "chat": {"id": int(CHAT)}, "text": "/help"}
    s.telegram.updates.push_raw({"update_id": update_id, "message": message})
    restarted_at = time.monotonic()
    w2 = s.start(config)
    first = wait_for(lambda: s.telegram.updates.polls_since(restarted_at), 20, what="a poll after the restart")[0]
    assert first.offset == last, (first, last)
    assert ask(s, "/status").startswith("✅ user0")  # one new answer, and no second /help
    assert [t for t in s.telegram.sent_to(CHAT) if t.startswith("Margin Watcher commands:")] == [
        s.telegram.sent_to(CHAT)[0]
    ]
    assert w2.alive()


@pytest.mark.parametrize(
    ("telegram", "expected"),
    [
        ({"commands": True, "poll_timeout": 90}, "notify.telegram.poll_timeout: must be at most 50 (got 90)"),
        (
            {"commands": "maybe"},
            "notify.telegram.commands: must be a valid boolean, unable to interpret input (got 'maybe')",
        ),
        ({"commands": True, "command_chats": [""]}, "notify.telegram.command_chats[0]"),
    ],
)
def test_bad_command_keys_stop_watcher_run_with_one_line(
    run_setup: RunSetup, telegram: dict[str, Any], expected: str
) -> None:
    """A bad value under [notify.telegram] is named, with the key, before the daemon starts (exit code 2)."""
    s = run_setup
    config = s.write_config({"notify": {"telegram": telegram}})
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "run", "--config", str(config)],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
