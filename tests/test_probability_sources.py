"""`watcher check --json` carries the liquidation probability of Compound v3, Liquity v1 and GMX v2 positions (our
stand-ins, not the protocols' contracts) from the rounds of the feeds each protocol's own oracle reads: Comet's
AssetInfo.priceFeed and baseTokenPriceFeed, the PriceFeed's priceAggregator, GMX's DataStore PRICE_FEED."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.aave_helpers import batch_reader
from tests.configs import accounts, check_config, local_chain
from tests.run_harness import check_json
from tests.test_compound_v3_standin import CometStandInWatcher
from tests.test_probability import walk
from watcher.chain import ChainClient
from watcher.devchain.anvil import Anvil
from watcher.devchain.comet import BASE, COLLATERALS, CometStandInMarket, deploy_comet_stand_in, new_addresses
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.feeds import deploy_round_feed
from watcher.outlook import Outlook
from watcher.probability import CLOSED_FORM, first_passage, realised_volatility

SIGMA = 0.8
Rounds = list[tuple[int, int]]


def ending_now(anvil: Anvil, sigma: float, seed: int, price: int, n: int = 600) -> Rounds:
    """A known random walk of `n` rounds (8 decimals), scaled to end at `price` a minute before anvil's head."""
    now = anvil.w3.eth.get_block("latest")["timestamp"]
    raw = walk(sigma, n, seed=seed)
    end_t, end_p = raw[-1]
    return [(now - 60 - (end_t - t), p * price // end_p) for t, p in raw]


def config(anvil: Anvil, deployment: dict[str, Any], users: list[str], path: Path) -> Path:
    chain = local_chain(anvil.chain_id, anvil.url, batch_reader(anvil.w3))
    return check_config(path, chain, deployment, accounts(users))


def estimates_of(run: Any, account: str) -> list[dict[str, Any]]:
    assert run.doc is not None, run.stderr
    [p] = [p for p in run.doc["positions"] if p["account"].lower() == account.lower()]
    return p["liquidation_probability"]


def assert_closed_form(estimates: list[dict[str, Any]], history: Rounds, distance: float) -> None:
    """Sigma within the walk's sampling error, and the probability the closed form gives at the position's distance."""
    vol = realised_volatility(history[-500:])  # probability.rounds: 500 by default
    assert vol is not None and abs(vol.sigma_annual - SIGMA) < 3 * vol.standard_error
    assert [e["horizon_s"] for e in estimates] == [3600, 86400, 604800]
    for e in estimates:
        assert e["samples"] == 499 and e["sigma_annual"] == pytest.approx(vol.sigma_annual)
        assert e["probability"] == pytest.approx(first_passage(distance, vol.sigma_annual, e["horizon_s"]))
    print("probabilities:", [(e["horizon_s"], round(e["probability"], 5)) for e in estimates])
    assert 0 < estimates[0]["probability"] < estimates[1]["probability"] < estimates[2]["probability"] < 1


@pytest.fixture(scope="module")
def comet(anvil: Anvil) -> Iterator[tuple[CometStandInMarket, dict[str, str], Rounds]]:
    """Comet with WETH and USDC on round-keeping feeds (WBTC keeps a code-less placeholder feed); borrowers at ~1.2."""
    snap = take_snapshot(anvil.w3)
    eth = ending_now(anvil, SIGMA, 61, 2_000 * 10**8)
    weth_feed = deploy_round_feed(anvil.w3, eth, description="ETH / USD")
    usdc_feed = deploy_round_feed(anvil.w3, [(t, 10**8) for t, _ in eth], description="USDC / USD")
    weth, wbtc = COLLATERALS
    market = deploy_comet_stand_in(
        anvil.w3,
        base=replace(BASE, feed_address=usdc_feed.address),
        collaterals=(replace(weth, feed_address=weth_feed.address), wbtc),
        salt="probability",
    )
    eth_user, btc_user = new_addresses(2, "probability")
    # 10 WETH at $2,000 with Comet's 0.83 liquidate factor carry 16,600 USD against 13,833 USDC: health 1.2
    market.set_position(eth_user, 13_833 * 10**6, {"WETH": 10 * 10**18})
    market.set_position(btc_user, 30_000 * 10**6, {"WBTC": 10**8})
    yield market, {"eth": eth_user, "btc": btc_user, "WETH": weth_feed.address, "USDC": usdc_feed.address}, eth
    revert_snapshot(anvil.w3, snap)


def test_compound_v3_probability_from_the_comets_own_feeds(
    anvil: Anvil, comet: tuple[CometStandInMarket, dict[str, str], Rounds], tmp_path: Path
) -> None:
    market, names, eth = comet
    deployment = {"protocol": "compound_v3", "name": "comet_local", "address": market.comet.address}
    run = check_json(config(anvil, deployment, [names["eth"], names["btc"]], tmp_path / "c.toml"))
    assert run.doc is not None, run.stderr
    [p] = [p for p in run.doc["positions"] if p["account"].lower() == names["eth"].lower()]
    estimates = p["liquidation_probability"]
    assert_closed_form(estimates, eth, math.log(p["health_raw"] / 10**18))
    for e in estimates:
        assert e["model"] == CLOSED_FORM
        # which feed each asset's history came from, as Comet names them: a user can check it
        assert e["feeds"] == {"WETH": names["WETH"], "USDC": names["USDC"]}


def test_compound_v3_feed_without_rounds_gives_null_and_the_reason(
    anvil: Anvil, comet: tuple[CometStandInMarket, dict[str, str], Rounds], tmp_path: Path
) -> None:
    """WBTC's feed is an address without code: it serves no rounds, so no probability, and the note says so."""
    market, names, _ = comet
    deployment = {"protocol": "compound_v3", "name": "comet_local", "address": market.comet.address}
    run = check_json(config(anvil, deployment, [names["btc"]], tmp_path / "b.toml"))
    for e in estimates_of(run, names["btc"]):
        assert e["probability"] is None and e["model"] == "none" and e["sigma_annual"] is None
        assert e["note"].startswith("no price history for WBTC: the feed serves no round history"), e["note"]


def test_compound_v3_node_gone_after_the_check_gives_price_history_unreadable(
    anvil: Anvil, comet: tuple[CometStandInMarket, dict[str, str], Rounds]
) -> None:
    """The check read the position from the node; then the node is gone: each probability null, naming why."""
    market, names, _ = comet
    [p] = [p for p in CometStandInWatcher(market, [names["eth"]]).check().positions]
    down = ChainClient.from_urls("local", 31337, ["http://127.0.0.1:9"], "0x" + "ab" * 20, 50_000_000, timeout=2.0)

    async def once() -> dict[str, Any]:
        try:
            return await Outlook(horizons=[86400]).estimate([p], {"local": down})
        finally:
            await down.close()

    [[e]] = asyncio.run(once()).values()
    assert e.probability is None and e.model == "none" and e.note.startswith("price history unreadable: "), e
