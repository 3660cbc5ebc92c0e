"""`watcher check --json` says each position's liquidation probability, from the rounds of the feeds the real Aave
oracle reads; `[probability]` sets the horizons and the rounds, or turns it off."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.aave_helpers import batch_reader
from tests.configs import accounts, check_config, local_chain
from tests.processes import REPO_ROOT, check_json, child_env
from tests.test_probability import walk
from watcher.devchain.aave import AaveMarket, deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import Calldata, Tx, revert_snapshot, send_txs, take_snapshot
from watcher.devchain.feeds import deploy_round_feed
from watcher.probability import CLOSED_FORM, first_passage, realised_volatility
from watcher.render import percent_text

SIGMA = 0.8


@pytest.fixture(scope="module")
def market(anvil: Anvil) -> Iterator[tuple[AaveMarket, str, list[tuple[int, int]]]]:
    """Real Aave v3.0 whose oracle reads WETH and USDC from round-keeping feeds; one borrower at health ~1.2."""
    snap = take_snapshot(anvil.w3)
    m = deploy_aave(anvil.w3, "3.0")
    now = anvil.w3.eth.get_block("latest")["timestamp"]
    raw = walk(SIGMA, 600, seed=41)
    # the walk, scaled to end at the market's $2,000 and shifted to end a minute ago: the position is as opened
    end_t, end_p = raw[-1]
    eth = [(now - 60 - (end_t - t), p * 2_000 * 10**8 // end_p) for t, p in raw]
    usdc = [(t, 10**8) for t, _ in eth]
    feeds = {"WETH": deploy_round_feed(anvil.w3, eth), "USDC": deploy_round_feed(anvil.w3, usdc)}
    set_sources = Calldata(m.oracle.abi).encode(
        "setAssetSources", [m.assets[s] for s in feeds], [f.address for f in feeds.values()]
    )
    send_txs(anvil.w3, [Tx(m.admin, m.oracle.address, set_sources, 500_000, "setAssetSources")])
    # 10 WETH at $2,000 with an 82.5 % threshold against 13,750 USDC: health 1.2
    user = m.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 13_750 * 10**6})
    yield m, user, eth
    revert_snapshot(anvil.w3, snap)


def _config(anvil: Anvil, m: AaveMarket, user: str, path: Path, **sections: Any) -> Path:
    deployment = {"protocol": "aave_v3", "name": "aave_local", "pool_addresses_provider": m.addresses_provider}
    chain = local_chain(anvil.chain_id, anvil.url, batch_reader(anvil.w3))
    return check_config(path, chain, deployment, accounts([user]), **sections)


def test_check_json_carries_the_probability_from_the_feeds_rounds(
    anvil: Anvil, market: tuple[AaveMarket, str, list[tuple[int, int]]], tmp_path: Path
) -> None:
    m, user, eth = market
    run = check_json(_config(anvil, m, user, tmp_path / "c.toml"))
    assert run.code == 1 and run.doc is not None, run.stderr  # health 1.2: warn
    [p] = run.doc["positions"]
    estimates = p["liquidation_probability"]
    assert [e["horizon_s"] for e in estimates] == [3600, 86400, 604800]
    vol = realised_volatility(eth[-500:])  # probability.rounds: the last 500 rounds by default
    assert vol is not None and abs(vol.sigma_annual - SIGMA) < 3 * vol.standard_error
    health = p["health_raw"] / 10**18
    for e in estimates:
        assert e["model"] == CLOSED_FORM and e["samples"] == 499
        assert e["sigma_annual"] == pytest.approx(vol.sigma_annual)
        assert e["probability"] == pytest.approx(first_passage(math.log(health), vol.sigma_annual, e["horizon_s"]))
    print("probabilities:", [(e["horizon_s"], round(e["probability"], 5)) for e in estimates])
    assert 0 < estimates[0]["probability"] < estimates[1]["probability"] < estimates[2]["probability"] < 1

    # the table says the 24 h figure under the health
    table = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "check", "--config", str(tmp_path / "c.toml")],
        cwd=REPO_ROOT,
        env=child_env({"COLUMNS": "200"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 1, table.stderr
    assert f"24 h liq. {percent_text(estimates[1]['probability'])}" in table.stdout, table.stdout


def test_probability_config_sets_horizons_and_rounds_or_turns_it_off(
    anvil: Anvil, market: tuple[AaveMarket, str, list[tuple[int, int]]], tmp_path: Path
) -> None:
    m, user, _ = market
    run = check_json(_config(anvil, m, user, tmp_path / "h.toml", probability={"horizons": [7200], "rounds": 100}))
    assert run.doc is not None, run.stderr
    [[e]] = [p["liquidation_probability"] for p in run.doc["positions"]]
    assert e["horizon_s"] == 7200 and e["samples"] == 99  # 100 rounds: 99 returns
    off = check_json(_config(anvil, m, user, tmp_path / "off.toml", probability={"enabled": False}))
    assert off.doc is not None and "liquidation_probability" not in off.doc["positions"][0]
    bad = check_json(_config(anvil, m, user, tmp_path / "bad.toml", probability={"horizons": [0]}))
    assert bad.code == 2 and "probability.horizons" in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr


def test_a_feed_without_rounds_gives_no_probability_and_says_why(anvil: Anvil, tmp_path: Path) -> None:
    """Aave's own MockAggregator answers latestAnswer alone: no history, so no probability, and the reason."""
    snap = take_snapshot(anvil.w3)
    try:
        m = deploy_aave(anvil.w3, "3.0")
        user = m.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 13_750 * 10**6})
        run = check_json(_config(anvil, m, user, tmp_path / "mock.toml"))
        assert run.doc is not None, run.stderr
        for e in run.doc["positions"][0]["liquidation_probability"]:
            assert e["probability"] is None and e["model"] == "none" and "no price history for" in e["note"]
    finally:
        revert_snapshot(anvil.w3, snap)
