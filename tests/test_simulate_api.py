"""GET /positions/{id}/simulate of a real `watcher run` process: the same numbers as `watcher simulate --json`."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.parse

from tests import run_harness
from tests.loopback import free_port
from tests.processes import REPO_ROOT, WatcherProcess, child_env, wait_for
from tests.run_harness import RunSetup
from tests.test_simulate import simulate
from watcher.api.simulate import NO_SIMULATORS

# The harness's fixtures, found by pytest under these names.
run_market = run_harness.run_market
run_setup = run_harness.run_setup
telegram_standin = run_harness.telegram_standin


def _q(*pairs: tuple[str, str]) -> str:
    return "?" + urllib.parse.urlencode(pairs)


def test_the_endpoint_and_the_cli_agree(run_setup: RunSetup) -> None:
    s = run_setup
    risky = s.market.open_position(None, {"WETH": 10 * 10**18, "WBTC": 10**7}, {"USDC": 18_000 * 10**6})  # 1.17
    s.accounts = [s.borrower, risky]
    config = s.write_config()
    proc = s.start(config)
    keys = [f"aave_local:local:{a}" for a in s.accounts]
    for key in keys:
        wait_for(lambda k=key: proc.status(f"/positions/{k}/simulate{_q(('shock', 'WETH:-1'))}")[0] == 200, 30)
    for cli_args, query in [
        (("--shock", "WETH=-20%"), _q(("shock", "WETH:-20"))),
        (("--shock", "WETH -15%", "--shock", "WBTC=+5.5%"), _q(("shock", "WETH -15%"), ("shock", "WBTC=+5.5%"))),
        (("--shock", "USDC:+10", "--at", "+30d"), _q(("shock", "USDC:+10"), ("at", "+30d"))),
    ]:
        code, cli, err = simulate(config, *cli_args, "--json")
        assert code in (0, 1) and err == "", err
        by_id = {p["id"]: p for p in cli["positions"]}
        for key in keys:
            api = proc.get(f"/positions/{key}/simulate{query}")
            [one] = api["positions"]
            assert one == by_id[key], (query, one, by_id[key])  # every number, the advice included
            assert api["shocks"] == cli["shocks"] and api["at"] == cli["at"]
    # The shocked risky position is liquidatable at -20 %, with a fix; the API says so as the CLI does.
    after = proc.get(f"/positions/{keys[1]}/simulate{_q(('shock', 'WETH:-20'))}")["positions"][0]
    assert after["liquidatable_after"] and after["level_after"] == "liquidatable" and after["advice_after"]["top_ups"]

    # The document's price ladder is the same replay: each rung's health is the endpoint's at that move.
    for key in keys:
        ladder = proc.get(f"/positions/{key}")["price_ladder"]
        assert ladder["symbol"] == "WETH" and ladder["rungs"], ladder
        for rung in ladder["rungs"][:3]:
            shock = ("shock", f"WETH:{rung['move_pct']}")
            at_move = proc.get(f"/positions/{key}/simulate{_q(shock)}")["positions"][0]
            assert rung["health_raw"] == at_move["health_after"]["raw"]
            assert rung["liquidatable"] == at_move["liquidatable_after"]
    risky_ladder = proc.get(f"/positions/{keys[1]}")["price_ladder"]
    assert risky_ladder["rungs"][-1]["liquidatable"] and risky_ladder["rungs"][-1]["move_pct"] >= -20
    [lp] = [x for x in proc.get(f"/positions/{keys[1]}")["liquidation_prices"] if x["symbol"] == "WETH"]
    assert risky_ladder["rungs"][-1]["price_raw"] <= lp["price_raw"] < risky_ladder["rungs"][-2]["price_raw"]

    for query, status, named in [
        (_q(("shock", "WETH:-120")), 400, "WETH:-120"),
        (_q(("shock", "DOGE:-5")), 400, "'DOGE'"),
        (_q(("shock", "WETH:-5"), ("at", "soon")), 400, "soon"),
        (_q(("shock", "WETH:-5"), ("when", "1")), 400, "'when'"),
        ("", 400, "shock"),
    ]:
        code, doc = proc.status(f"/positions/{keys[0]}/simulate{query}")
        assert code == status and named in doc["error"]["message"], (query, code, doc)
    code, doc = proc.status(f"/positions/aave_local:local:0x{'12' * 20}/simulate{_q(('shock', 'WETH:-5'))}")
    assert code == 404, doc
    spec = proc.get("/openapi.json")["paths"]["/positions/{id}/simulate"]["get"]
    assert [p["name"] for p in spec["parameters"]] == ["id", "shock", "at"] and "503" in spec["responses"]


def test_watcher_api_alone_answers_503_with_the_reason(run_setup: RunSetup) -> None:
    s = run_setup
    config = s.write_config()
    proc = s.start(config)
    key = f"aave_local:local:{s.borrower}"
    wait_for(lambda: proc.status(f"/positions/{key}")[0] == 200, 30)
    proc.stop()
    alone = s.write_config({"api": {"port": free_port()}}, name="api.toml")
    api = subprocess.Popen(
        [sys.executable, "-m", "watcher.cli", "api", "--config", str(alone)],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        viewer = WatcherProcess(alone)
        wait_for(lambda: viewer.status("/health")[0] == 200, 30)
        assert viewer.status(f"/positions/{key}")[0] == 200  # the stored document is there ...
        code, doc = viewer.status(f"/positions/{key}/simulate{_q(('shock', 'WETH:-20'))}")
        assert code == 503 and doc["error"]["message"] == NO_SIMULATORS  # ... but no simulator to replay it on
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(15)
