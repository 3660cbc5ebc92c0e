"""Checks on new heads, through `watcher run --config`: follow_heads, head_poll and ws_url, each shown by its effect.

The session anvil mines a block only for a transaction, so a price change is exactly one new head: with a 20 s
interval, an alert within about a second can only come from following heads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests import run_harness
from tests.loopback import free_port
from tests.processes import REPO_ROOT, WatcherProcess, child_env, wait_for
from tests.rpc_proxy import RpcProxy
from tests.run_harness import RunSetup, set_price

run_market = run_harness.run_market
run_setup = run_harness.run_setup
telegram_standin = run_harness.telegram_standin

#: the fallback interval: far longer than any bound below, so only a head can explain a quick alert
LONG = 20.0
#: seconds from the block to the message when heads are followed (one poll or notification, a check, one send)
BOUND = 1.5


def _ws(url: str) -> str:
    return url.replace("http://", "ws://", 1)


def _alert_after_block(s: RunSetup, wait: float) -> float | None:
    """Crash the WETH price (liquidatable at once) and return the seconds until the alert, None if none came.

    Counted from before the transaction is sent: set_price returns only after anvil has mined it (and the watcher
    may already have alerted by then).
    """
    mined = time.monotonic()
    set_price(s.market, "WETH", 1_400)
    end = mined + wait
    while time.monotonic() < end:
        for r in list(s.telegram.received):
            if "LIQUIDATABLE" in r.text:
                return r.at - mined
        time.sleep(0.02)
    return None


def _first_check(w: WatcherProcess) -> None:
    wait_for(lambda: w.logs("check", chain="local"), 30, what="a first good check")


@pytest.mark.parametrize("follow", [True, False])
def test_follow_heads_checks_each_new_block_at_once(run_setup: RunSetup, follow: bool) -> None:
    """follow_heads = true: the block that makes the position liquidatable is alerted within 1.5 s, with a 20 s
    interval; follow_heads = false: nothing for 3 s (the check waits for its interval)."""
    s = run_setup
    w = s.start(s.write_config(interval=LONG, head_poll=0.1, follow_heads=follow))
    _first_check(w)
    time.sleep(0.3)
    latency = _alert_after_block(s, BOUND if follow else 3.0)
    print(f"follow_heads {follow}: alert {latency} s after the block (interval {LONG} s)")
    if follow:
        assert latency is not None and latency <= BOUND, latency
    else:
        assert latency is None, f"alerted {latency:.2f} s after the block with follow_heads = false"


def test_head_poll_sets_the_eth_blocknumber_rate(run_setup: RunSetup) -> None:
    """head_poll = 0.1 asks eth_blockNumber about ten times a second; head_poll = 1 about once."""
    s = run_setup
    fast, slow = RpcProxy(s.anvil.url).start(), RpcProxy(s.anvil.url).start()
    try:
        for name, p, poll in (("fast.toml", fast, 0.1), ("slow.toml", slow, 1.0)):
            db = {"storage": {"path": str(s.tmp_path / f"{name}.db")}, "api": {"port": free_port()}}
            w = s.start(s.write_config(db, name=name, rpc_urls=[p.url], interval=LONG, head_poll=poll))
            _first_check(w)
        since = time.monotonic()
        time.sleep(4.0)
        rates = {poll: p.count("eth_blockNumber", since=since) / 4.0 for p, poll in ((fast, 0.1), (slow, 1.0))}
        print(f"eth_blockNumber per second by head_poll: {rates}")
        assert 6.0 <= rates[0.1] <= 11.0 and 0.5 <= rates[1.0] <= 1.5, rates
    finally:
        s.cleanup()
        fast.stop()
        slow.stop()


def test_ws_url_newheads_wakes_the_check(run_setup: RunSetup) -> None:
    """ws_url on anvil's WebSocket, head_poll 30 s, interval 20 s: the alert within 1.5 s comes from newHeads."""
    s = run_setup
    w = s.start(s.write_config(interval=LONG, head_poll=30.0, ws_url=_ws(s.anvil.url)))
    _first_check(w)
    wait_for(lambda: w.logs("following newHeads", chain="local"), 10, what="the newHeads subscription")
    latency = _alert_after_block(s, BOUND)
    print(f"ws newHeads: alert {latency} s after the block (head_poll 30 s, interval {LONG} s)")
    assert latency is not None and latency <= BOUND, latency
    entry = w.logs("following newHeads")[0]
    assert entry["url"] == "chains.local.ws_url"


def test_a_dead_ws_url_falls_back_to_polling_and_never_logs_its_key(run_setup: RunSetup) -> None:
    """ws_url on a closed port (with a key in its path): a warning naming the key, not the URL; alerts still come
    within 1.5 s through the head poll."""
    s = run_setup
    dead = f"ws://127.0.0.1:{free_port()}/v2/SECRET-WS-KEY"
    w = s.start(s.write_config(interval=LONG, head_poll=0.1, ws_url=dead))
    _first_check(w)
    down = wait_for(lambda: w.logs("newHeads subscription down, polling"), 10, what="the ws warning")
    assert down[0]["url"] == "chains.local.ws_url"
    latency = _alert_after_block(s, BOUND)
    print(f"dead ws_url: alert {latency} s after the block through the poll")
    assert latency is not None and latency <= BOUND, latency
    assert not any("SECRET-WS-KEY" in json.dumps(e) for e in w.logs()) and not any("SECRET" in x for x in w.other)


def test_a_ws_url_that_is_not_a_websocket_is_one_line_and_exit_2(run_setup: RunSetup) -> None:
    """ws_url = "http://..." stops `watcher run` before any check, naming the key."""
    s = run_setup
    cfg = s.write_config(ws_url=s.anvil.url)
    done = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "run", "--config", str(cfg)],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-500:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "chains.local.ws_url" in lines[0] and "ws://" in lines[0], lines
