"""`alerts.warn_days_to_liquidation` through a config file and `watcher run`: a borrower healthy by its health factor
warns because interest liquidates it within the limit; the warning survives a restart without a second message,
and recovers once a repayment pushes the time out.
"""

from __future__ import annotations

import time

from tests import run_harness
from tests.processes import wait_for
from tests.run_harness import RunSetup
from tests.test_forecast_aave import _drain

run_market = run_harness.run_market
run_setup = run_harness.run_setup
telegram_standin = run_harness.telegram_standin


def _texts(setup: RunSetup) -> list[str]:
    return [r.text for r in setup.telegram.received]


def test_warn_days_to_liquidation_fires_holds_and_recovers(run_setup: RunSetup) -> None:
    setup = run_setup
    _drain(setup.market, "USDC")  # USDC's borrow rate past the kink: health 1.375 lasts months, not years

    # Without the rule the borrower is ok (1.375 > warn 1.25): a few checks and nothing is sent.
    plain = setup.start(setup.write_config(name="plain.toml"))
    wait_for(lambda: plain.logs("check"), 30, what="a first check")
    time.sleep(2)
    plain.stop()
    assert _texts(setup) == []

    cfg = setup.write_config({"alerts": {"warn_days_to_liquidation": 365}, "storage": {"path": str(setup.db_path)}})
    proc = setup.start(cfg)
    warn = wait_for(lambda: [t for t in _texts(setup) if t.splitlines()[0].startswith("⚠️ WARN")], 30, what="a warn")
    [text] = warn
    assert "Health 1.37" in text and "at constant prices" in text and "Liquidation in " in text, text
    days = float(text.split("Liquidation in ")[1].split(" days")[0])
    assert 30 < days < 365, text
    [doc] = proc.get("/positions")["positions"]
    assert doc["level"] == "ok" and 30 * 86_400 < doc["time_to_liquidation"]["seconds"] < 365 * 86_400
    proc.stop()

    # Restarted on the same database: the warning is remembered, not sent again.
    again = setup.start(cfg)
    wait_for(lambda: len(again.logs("check")) >= 3, 30, what="three checks after the restart")
    assert len(_texts(setup)) == 1

    # Repaying most of the debt (and the lower usage it leaves) puts liquidation years away: recovered.
    setup.market.repay(setup.borrower, "USDC", 9_000 * 10**6)
    rec = wait_for(lambda: [t for t in _texts(setup) if "RECOVERED" in t], 30, what="a recovery")
    assert len(rec) == 1 and len(_texts(setup)) == 2
