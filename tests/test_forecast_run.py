"""Time to liquidation on the user's path: `watcher check --json` and its table as processes, the API document and
the Telegram message of a running `watcher run`, all over real Aave v3.0 on anvil; the Pool is the judge.
"""

from __future__ import annotations

import subprocess
import sys

from tests import run_harness
from tests.aave_helpers import Watcher, latest_timestamp, set_price_at
from tests.processes import REPO_ROOT, check_json, child_env, wait_for
from tests.run_harness import RunSetup
from tests.test_forecast_aave import _drain, _tick_at
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.forecast import DAY
from watcher.model import WAD
from watcher.risk import liquidation_price

run_market = run_harness.run_market
run_setup = run_harness.run_setup
telegram_standin = run_harness.telegram_standin


def _near_boundary(setup: RunSetup) -> None:
    """Drain USDC (borrow rate past the kink) and move WETH so that the borrower's health is a few bps above 1."""
    market = setup.market
    _drain(market, "USDC")
    watcher = Watcher(market, [setup.borrower])
    position = watcher.positions()[setup.borrower]
    at = latest_timestamp(market.w3) + 60
    lp = liquidation_price(position.simulator.at_time(at), position.collateral[0])
    assert lp is not None and lp.falling
    set_price_at(market, "WETH", lp.price * 10_004 // 10_000, at)


def test_check_json_api_and_telegram_carry_the_pools_time(run_setup: RunSetup) -> None:
    setup = run_setup
    _near_boundary(setup)
    cfg = setup.write_config()
    run = check_json(cfg)
    assert run.code == 1, run.stderr  # critical
    [doc] = run.doc["positions"]
    ttl = doc["time_to_liquidation"]
    at, start = ttl["at"], doc["block"]["timestamp"]
    assert ttl["modelled"] and ttl["horizon_s"] == 10 * 365 * DAY and isinstance(at, int), ttl
    assert ttl["seconds"] == at - start and 0 < at - start < 30 * DAY
    assert isinstance(doc["interest_per_day"], int) and doc["interest_per_day"] > 0
    [usdc] = doc["debt"]
    assert float(usdc["apy"]) > 0.3 and doc["collateral"][0]["apy"] is not None

    # The Pool's own verdict at the predicted second and one second before it.
    market, w3 = setup.market, setup.market.w3
    snap = take_snapshot(w3)
    assert market.health_factor(setup.borrower, _tick_at(market, at)) < WAD
    revert_snapshot(w3, snap)
    snap = take_snapshot(w3)
    assert market.health_factor(setup.borrower, _tick_at(market, at - 1)) >= WAD
    revert_snapshot(w3, snap)

    table = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "check", "--config", str(cfg)],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 1 and "liq. in " in table.stdout, table.stdout

    proc = setup.start(cfg)
    msg = wait_for(
        lambda: next((r.text for r in setup.telegram.received if "CRITICAL" in r.text), None),
        30,
        what="a critical message",
    )
    assert "at constant prices" in msg and "Liquidation in " in msg, msg

    def api_doc() -> dict | None:
        docs = proc.get("/positions")["positions"]
        return next((d for d in docs if d.get("time_to_liquidation")), None)

    api = wait_for(api_doc, 30, what="a position document")
    assert api["time_to_liquidation"]["at"] == at and api["interest_per_day"] == doc["interest_per_day"]
    assert api["debt"][0]["apy"] == usdc["apy"]
