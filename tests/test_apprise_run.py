"""Channels through apprise under the real `watcher run --config`: json:// and ntfy:// posts to a local stand-in,
the stand-in down, hanging, refusing, and a restart between enqueue and delivery, as the user sees them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import run_harness
from tests.apprise_standin import HookStandIn
from tests.processes import WatcherProcess, wait_for
from tests.run_harness import RunSetup, ref_of, set_price

run_market = run_harness.run_market
run_setup = run_harness.run_setup
telegram_standin = run_harness.telegram_standin

INTERVAL = 0.5
#: The credentials in the json:// URL: never in a log line, an API answer or on stdout.
HOOK_SECRET = "hook-user:HOOK-SECRET-PASSWORD@"
JSON_ENV, NTFY_ENV = "MW_TEST_JSON_URL", "MW_TEST_NTFY_URL"


@pytest.fixture
def hook() -> Iterator[HookStandIn]:
    server = HookStandIn().start()
    yield server
    server.stop()


def apprise_config(s: RunSetup, entries: list[dict[str, Any]], **notify: Any) -> Any:
    """The harness config with these [[notify.apprise]] entries (and other [notify] keys), retries fast."""
    overrides = {"notify": {"retry_initial": 0.3, "retry_max": 1.0, "apprise": entries} | notify}
    return s.write_config(overrides | {"alerts": {"falling_drop": 10}}, interval=INTERVAL)


def start(s: RunSetup, config: Any, env: dict[str, str]) -> WatcherProcess:
    w = WatcherProcess(config, env)
    s._procs.append(w)
    w.start()
    wait_for(lambda: w.logs("check", chain="local"), 30, what="a first good check")
    return w


def deliveries(w: WatcherProcess, channel: str) -> list[dict[str, Any]]:
    """Every outbox row of `channel` that /alerts shows, newest alert first."""
    return [d for a in w.get("/alerts")["alerts"] for d in a["deliveries"] if d["channel"] == channel]


def no_secret_anywhere(w: WatcherProcess, secret: str) -> None:
    """The secret is in no log line, no other stderr line, no stdout line, no /alerts or /health answer."""
    seen = [str(e) for e in w.lines] + w.other + w.stdout + [str(w.get("/alerts")), str(w.get("/health"))]
    assert not [line for line in seen if secret in line], "a secret leaked"


def test_json_and_ntfy_posts_carry_the_alert_and_its_ref(run_setup: RunSetup, hook: HookStandIn) -> None:
    """A warn reaches the json:// and the ntfy:// stand-ins, titled, with the alert text and its `ref:` line;
    the URLs (credentials in the json one) are never printed."""
    s = run_setup
    json_url, ntfy_url = hook.json_url("hook", HOOK_SECRET), hook.ntfy_url("margin")
    cfg = apprise_config(s, [{"name": "hook", "url": {"env": JSON_ENV}}, {"url": {"env": NTFY_ENV}}])
    w = start(s, cfg, {JSON_ENV: json_url, NTFY_ENV: ntfy_url})
    set_price(s.market, "WETH", 1_700)  # warn
    wait_for(lambda: len(hook.posts) >= 2, 10, what="both apprise posts")
    by_path = {p.path: p for p in hook.posts}
    assert set(by_path) == {"/hook", "/"}, by_path  # ntfy posts its topic in the body to the server's root
    tg = wait_for(lambda: s.telegram.received, 5, what="the Telegram copy")[0]
    ref = ref_of(tg.text)
    assert ref and ref.endswith(":warn")
    for post in by_path.values():
        assert "WARN" in post.body["title"] and "WARN" in post.text and post.text.endswith(f"ref: {ref}")
    assert by_path["/"].body["topic"] == "margin"
    assert by_path["/hook"].body["type"] == "info" and by_path["/hook"].headers["Authorization"].startswith("Basic")
    names = {d["channel"] for a in w.get("/alerts")["alerts"] for d in a["deliveries"]}
    assert names == {"telegram", "hook", "apprise:2"}
    assert set(w.get("/health")["notify"]) == {"telegram", "hook", "apprise:2"}
    no_secret_anywhere(w, "HOOK-SECRET-PASSWORD")
    no_secret_anywhere(w, ntfy_url)


@pytest.mark.parametrize("plugin", ["json", "ntfy"])
def test_an_outage_of_the_service_is_retried_and_loses_nothing(
    run_setup: RunSetup, hook: HookStandIn, plugin: str
) -> None:
    """The service answers 503 for 4 s: the warn is retried with backoff and arrives after it recovers, once;
    /health says the channel failed meanwhile, and is ok again after the delivery."""
    s = run_setup
    cfg = apprise_config(s, [{"url": {"env": JSON_ENV}}])
    w = start(s, cfg, {JSON_ENV: hook.json_url() if plugin == "json" else hook.ntfy_url()})
    hook.down(4.0)
    down_at = time.monotonic()
    set_price(s.market, "WETH", 1_700)
    failing = wait_for(lambda: (h := w.get("/health"))["status"] == "degraded" and h, 10, what="/health degraded")
    assert failing["notify"]["apprise:1"]["last_error"] == "apprise:1: HTTP 503"
    wait_for(lambda: hook.posts, 15, what="the warn after the outage")
    assert hook.posts[0].at >= down_at + 4.0
    failed = [st for _, st in hook.attempts if st == 503]
    assert len(failed) >= 2, hook.attempts  # retried, not given up
    wait_for(lambda: w.get("/health")["status"] == "ok", 5, what="/health ok after the delivery")
    row = deliveries(w, "apprise:1")[0]
    assert row["status"] == "delivered" and row["attempts"] == len(failed) + 1
    time.sleep(1.0)
    assert len(hook.posts) == 1 and "WARN" in hook.posts[0].text


def test_a_hanging_service_is_cut_at_its_timeout_and_holds_no_other_channel(
    run_setup: RunSetup, hook: HookStandIn
) -> None:
    """Every post hangs 5 s against a 1 s timeout: Telegram gets the warn at once, the apprise row records the
    timeout and is retried; once the service answers again the warn arrives there too."""
    s = run_setup
    cfg = apprise_config(s, [{"url": {"env": JSON_ENV}, "timeout": 1.0}])
    w = start(s, cfg, {JSON_ENV: hook.json_url()})
    hook.hang(5.0)
    priced = time.monotonic()
    set_price(s.market, "WETH", 1_700)
    tg = wait_for(lambda: s.telegram.received, 5, what="the warn at Telegram")[0]
    print(f"hanging apprise service: Telegram got the warn {tg.at - priced:.2f} s after its block")
    assert tg.at - priced <= 2.0
    row = wait_for(lambda: [d for d in deliveries(w, "apprise:1") if d["attempts"] >= 1], 5, what="a timed-out try")
    assert row[0]["status"] == "pending" and row[0]["last_error"] == "apprise:1: timed out after 1 s"
    hook.clear()
    wait_for(lambda: hook.texts(), 15, what="the warn once the service answers")
    assert ref_of(hook.texts()[0]) == ref_of(tg.text)


@pytest.mark.parametrize("plugin", ["json", "ntfy"])
def test_a_permanent_refusal_gives_the_row_up_and_hands_it_to_the_fallback(
    run_setup: RunSetup, hook: HookStandIn, plugin: str
) -> None:
    """The service answers 403 to everything (ntfy with its own code 40301 in the body): the row is given up at once
    (not retried), /alerts and /health say so, and the warn reaches the fallback channel (Telegram, whose own levels
    leave warn out: delivering wins)."""
    s = run_setup
    hook.refuse_all(403)
    entry = {"name": "phone", "url": {"env": JSON_ENV}, "fallback": "telegram"}
    cfg = apprise_config(s, [entry], telegram={"levels": ["liquidatable"]})
    w = start(s, cfg, {JSON_ENV: hook.json_url() if plugin == "json" else hook.ntfy_url()})
    set_price(s.market, "WETH", 1_700)  # warn: only the apprise channel's by routing
    tg = wait_for(lambda: s.telegram.received, 10, what="the fallback copy at Telegram")[0]
    assert "WARN" in tg.text and ref_of(tg.text).endswith(":warn")
    phone = deliveries(w, "phone")[0]
    assert phone["status"] == "failed" and phone["last_error"] == "phone: refused with HTTP 403"
    assert phone["attempts"] == 1 and len(hook.attempts) == 1
    health = w.get("/health")
    assert health["status"] == "degraded" and health["notify"]["phone"]["gave_up"] is True
    copy = deliveries(w, "telegram")[0]
    assert copy["status"] == "delivered"


def test_a_restart_between_enqueue_and_delivery_sends_it_after_the_restart(
    run_setup: RunSetup, hook: HookStandIn
) -> None:
    """The warn is enqueued while the service is down; the watcher is killed (SIGKILL) before it got through, and
    started again with the service back: the warn arrives then, with the same ref (at least once)."""
    s = run_setup
    cfg = apprise_config(s, [{"url": {"env": JSON_ENV}}])
    env = {JSON_ENV: hook.json_url()}
    w = start(s, cfg, env)
    hook.down(3600.0)
    set_price(s.market, "WETH", 1_700)
    wait_for(lambda: [d for d in deliveries(w, "apprise:1") if d["attempts"] >= 1], 10, what="a failed try")
    tg = wait_for(lambda: s.telegram.received, 5, what="the warn at Telegram")[0]
    w.kill()
    assert not hook.posts
    hook.clear()
    again = start(s, cfg, env)
    wait_for(lambda: hook.texts(), 15, what="the warn after the restart")
    assert ref_of(hook.texts()[0]) == ref_of(tg.text)
    assert deliveries(again, "apprise:1")[0]["status"] == "delivered"
