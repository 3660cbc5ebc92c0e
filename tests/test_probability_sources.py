"""`watcher check --json` carries the liquidation probability of Compound v3, Liquity v1 and GMX v2 positions (our
stand-ins, not the protocols' contracts; Morpho Blue itself over a stand-in of its Chainlink oracle) from the rounds of
the feeds each protocol's own oracle reads: Comet's AssetInfo.priceFeed and baseTokenPriceFeed, the PriceFeed's
priceAggregator, GMX's DataStore PRICE_FEED, the Morpho oracle's BASE_FEED_1 / QUOTE_FEED_1."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from tests.aave_helpers import batch_reader
from tests.configs import accounts, check_config, local_chain
from tests.run_harness import check_json
from tests.test_compound_v3_standin import CometStandInWatcher
from tests.test_probability import walk
from watcher.adapters.gmx_v2 import FLOAT as GMX_USD
from watcher.adapters.gmx_v2.keys import token_key
from watcher.chain import ChainClient
from watcher.devchain.anvil import Anvil
from watcher.devchain.comet import BASE, COLLATERALS, CometStandInMarket, deploy_comet_stand_in, new_addresses
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.feeds import deploy_morpho_chainlink_oracle, deploy_round_feed, push_rounds
from watcher.devchain.gmx import GmxStandIn, deploy_gmx_stand_in
from watcher.devchain.liquity import deploy_liquity_v1_stand_in, deploy_liquity_v2_stand_in
from watcher.devchain.morpho import deploy_morpho
from watcher.model import WAD
from watcher.outlook import Outlook
from watcher.perp_probability import PERP_CLOSED_FORM
from watcher.probability import CLOSED_FORM, first_passage, ratio_history, realised_volatility

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


def test_liquity_v1_probability_from_the_price_feeds_chainlink_aggregator(anvil: Anvil, tmp_path: Path) -> None:
    """v1's PriceFeed reads priceAggregator (Chainlink ETH/USD); Liquity counts LUSD at 1 USD: ETH is the driver."""
    snap = take_snapshot(anvil.w3)
    try:
        liquity = deploy_liquity_v1_stand_in(anvil.w3)
        eth = ending_now(anvil, SIGMA, 62, 2_000 * 10**8)
        aggregator = deploy_round_feed(anvil.w3, eth, description="ETH / USD")
        liquity.set_price_aggregator(aggregator.address)
        assert liquity.oracle_price() == eth[-1][1] * 10**10  # fetchPrice: the aggregator's answer at 18 decimals
        borrower, whale = new_addresses(2, "liquity-probability")
        # 10 ETH at ~$2,000 against 15,151 LUSD: ICR ~1.32, health ~1.2 over the 110 % MCR; a whale keeps TCR high
        liquity.set_trove(borrower, 15_151 * WAD, 10 * WAD)
        liquity.set_trove(whale, 10_000 * WAD, 100 * WAD)
        deployment = {"protocol": "liquity_v1", "name": "liquity_local", "address": liquity.trove_manager.address}
        run = check_json(config(anvil, deployment, [borrower], tmp_path / "l.toml"))
        assert run.doc is not None, run.stderr
        [p] = [p for p in run.doc["positions"] if p["account"].lower() == borrower.lower()]
        estimates = p["liquidation_probability"]
        assert_closed_form(estimates, eth, math.log(p["health_raw"] / WAD))
        for e in estimates:
            assert e["model"] == CLOSED_FORM
            assert e["feeds"] == {"ETH": aggregator.address, "LUSD": "fixed at 1 USD by Liquity"}
    finally:
        revert_snapshot(anvil.w3, snap)


def test_liquity_v2_weth_branch_probability_from_its_price_feeds_eth_usd_oracle(anvil: Anvil, tmp_path: Path) -> None:
    """A WETH branch's PriceFeed answers its ethUsdOracle's rounds, named by `contracts.eth_usd_price_feed_<i>`;
    BOLD counts at 1 USD. A branch without the key says which key would name it; a key without a branch index is
    refused by name."""
    snap = take_snapshot(anvil.w3)
    try:
        v2 = deploy_liquity_v2_stand_in(anvil.w3)
        eth = ending_now(anvil, SIGMA, 64, 2_000 * 10**8)
        aggregator = deploy_round_feed(anvil.w3, eth, description="ETH / USD")
        v2.set_eth_usd_oracle(0, aggregator.address)
        assert v2.oracle_price(0) == eth[-1][1] * 10**10  # fetchPrice: the aggregator's answer at 18 decimals
        weth_owner, lst_owner, whale = new_addresses(3, "liquity-v2-probability")
        # 10 WETH at ~$2,000 against 15,151 BOLD: ICR ~1.32, health ~1.2 over the 110 % MCR; a whale keeps TCR high
        v2.set_trove(0, 1, weth_owner, 15_151 * WAD, 10 * WAD)
        v2.set_trove(0, 2, whale, 10_000 * WAD, 100 * WAD)
        v2.set_trove(1, 3, lst_owner, 12_000 * WAD, 10 * WAD)
        v2.set_trove(1, 4, whale, 10_000 * WAD, 100 * WAD)
        feed = v2.branches[0].price_feed.address
        deployment = {
            "protocol": "liquity_v2",
            "name": "liquity_v2_local",
            "address": v2.collateral_registry.address,
            "troves": [1, 3],
            "contracts": {"eth_usd_price_feed_0": feed},
        }
        run = check_json(config(anvil, deployment, [weth_owner, lst_owner], tmp_path / "v2.toml"))
        assert run.doc is not None, run.stderr
        [p] = [p for p in run.doc["positions"] if p["account"].lower() == weth_owner.lower()]
        estimates = p["liquidation_probability"]
        assert_closed_form(estimates, eth, math.log(p["health_raw"] / WAD))
        [coll] = p["collateral"]
        for e in estimates:
            assert e["model"] == CLOSED_FORM
            assert e["feeds"] == {coll["symbol"]: aggregator.address, "BOLD": "fixed at 1 USD by Liquity"}
        [lst] = estimates_of(run, lst_owner)[:1]
        assert lst["probability"] is None and "contracts.eth_usd_price_feed_1" in lst["note"], lst

        # the wstETH branch's feed named by mistake: it names ETH-USD too, but answers its own $2,400
        v2.set_eth_usd_oracle(1, aggregator.address, answered=False)
        lst_feed = v2.branches[1].price_feed.address
        wrong = deployment | {"contracts": {"eth_usd_price_feed_0": feed, "eth_usd_price_feed_1": lst_feed}}
        run = check_json(config(anvil, wrong, [weth_owner, lst_owner], tmp_path / "wrong.toml"))
        [lst] = estimates_of(run, lst_owner)[:1]
        assert lst["probability"] is None and "not the feed of its price" in lst["note"], lst
        assert "answers 2,000.00, not the 2,400.00" in lst["note"], lst
        assert estimates_of(run, weth_owner)[0]["probability"] is not None

        for key, why in (("eth_usd_price_feed_weth", "not a branch index"), ("eth_usd_price_feed_00", "not a branch")):
            bad = deployment | {"contracts": {key: feed}}
            refused = check_json(config(anvil, bad, [weth_owner], tmp_path / "bad.toml"))
            assert refused.code == 2 and f"contracts.{key}: ends in" in refused.stderr and why in refused.stderr
            assert "Traceback" not in refused.stderr
        beyond = deployment | {"contracts": {"eth_usd_price_feed_5": feed}}
        unread = check_json(config(anvil, beyond, [weth_owner], tmp_path / "beyond.toml"))
        assert unread.code == 3 and "Traceback" not in unread.stderr  # the deployment unreadable, saying why
        said = unread.stderr + str(unread.doc)
        assert "contracts.eth_usd_price_feed_5 names branch 5, but the CollateralRegistry has 2 branches" in said, said

        # a shut-down branch's price no longer follows the feed: no figure from it
        push_rounds(anvil.w3, aggregator, [(eth[-1][0] + 60, 200 * 10**8)])  # TCR under SCR: it may be shut down
        v2.shutdown(0)
        run = check_json(config(anvil, deployment, [weth_owner], tmp_path / "shut.toml"))
        [shut] = estimates_of(run, weth_owner)[:1]
        assert shut["probability"] is None and "branch 0 is shut down" in shut["note"], shut
    finally:
        revert_snapshot(anvil.w3, snap)


@pytest.fixture(scope="module")
def gmx(anvil: Anvil) -> Iterator[tuple[GmxStandIn, str, Rounds]]:
    """GMX's DataStore names a round-keeping feed for WETH (the other tokens keep the stand-in's latest-only feeds)."""
    snap = take_snapshot(anvil.w3)
    g = deploy_gmx_stand_in(anvil.w3)
    eth = ending_now(anvil, SIGMA, 63, 3_000 * 10**8)
    feed = deploy_round_feed(anvil.w3, eth, description="ETH / USD")
    weth = g.token("WETH").address
    g._send(
        [("GmxDataStoreStandIn", g.data_store.address, "setAddress", (token_key("PRICE_FEED", weth), feed.address))]
    )
    yield g, feed.address, eth
    revert_snapshot(anvil.w3, snap)


def _gmx_deployment(g: GmxStandIn) -> dict[str, Any]:
    return {
        "protocol": "gmx_v2",
        "name": "gmx_local",
        "address": g.reader.address,
        "contracts": {"data_store": g.data_store.address},
    }


def test_gmx_perp_probability_from_the_datastores_price_feed(
    anvil: Anvil, gmx: tuple[GmxStandIn, str, Rounds], tmp_path: Path
) -> None:
    """A 10x ETH long on USDC: the driver is ETH, the boundary the leg's own liquidation price."""
    g, feed, eth = gmx
    [trader] = new_addresses(1, "gmx-probability")
    mark = eth[-1][1] // 10**8  # whole USD, the walk ends at 3,000
    g.set_position(trader, "ETH/USD", "USDC", True, 30_000 * GMX_USD, 30_000 * 10**18 // mark, 3_000 * 10**6)
    run = check_json(config(anvil, _gmx_deployment(g), [trader], tmp_path / "g.toml"))
    assert run.doc is not None, run.stderr
    [p] = [p for p in run.doc["positions"] if p["account"].lower() == trader.lower()]
    [leg] = p["perps"]
    distance = abs(math.log(Fraction(leg["liquidation_price"]["exact"]) / Fraction(leg["mark_price"]["exact"])))
    assert 0.05 < distance < 0.2, leg  # about 10 % below the mark at 10x
    estimates = p["liquidation_probability"]
    assert_closed_form(estimates, eth, distance)
    for e in estimates:
        assert e["model"] == PERP_CLOSED_FORM and e["feeds"] == {leg["market"]: feed}


def test_gmx_feed_without_rounds_gives_null_and_the_reason(
    anvil: Anvil, gmx: tuple[GmxStandIn, str, Rounds], tmp_path: Path
) -> None:
    """BTC's feed is the stand-in's latest-only one: round 1 and nothing before it, so no probability, and why."""
    g, _, _ = gmx
    [trader] = new_addresses(1, "gmx-probability-btc")
    g.set_position(trader, "BTC/USD", "USDC", False, 30_000 * GMX_USD, 10**8 // 2, 3_000 * 10**6)
    run = check_json(config(anvil, _gmx_deployment(g), [trader], tmp_path / "g.toml"))
    for e in estimates_of(run, trader):
        assert e["probability"] is None and e["model"] == "none"
        # no symbols in the config: the stand-in's code-less tokens show as addresses
        assert e["note"].startswith("not enough price history for ") and ": 1 round (at least 21)" in e["note"], e


def test_morpho_blue_probability_from_the_chainlink_oracles_base_and_quote_feeds(anvil: Anvil, tmp_path: Path) -> None:
    """Morpho's MorphoChainlinkOracleV2 (our stand-in) prices WETH in USDC as BASE_FEED_1 / QUOTE_FEED_1, the other
    two unset: the driver is that ratio of two walks, both moving, on their own round times."""
    snap = take_snapshot(anvil.w3)
    try:
        eth = ending_now(anvil, SIGMA, 64, 2_000 * 10**8)
        usdc = ending_now(anvil, 0.05, 65, 10**8)
        base, quote = deploy_round_feed(anvil.w3, eth), deploy_round_feed(anvil.w3, usdc)
        # SCALE_FACTOR 10**(36 + 6 + 8 - 18 - 8): USDC base units per WETH wei at 1e36
        oracle = deploy_morpho_chainlink_oracle(anvil.w3, 10**24, base1=base.address, quote1=quote.address)
        morpho = deploy_morpho(anvil.w3, oracle_address=oracle.address)
        assert morpho.morpho.functions.idToMarketParams(morpho.market_id).call()[2] == oracle.address
        [user] = morpho.new_users(1)
        morpho.open_position(user, 10**18, 1_433 * 10**6)  # 1 WETH at 2,000 with LLTV 0.86: health 1.2
        deployment = {
            "protocol": "morpho_blue",
            "name": "morpho_local",
            "morpho": morpho.morpho.address,
            "markets": [morpho.market_id],
        }
        run = check_json(config(anvil, deployment, [user], tmp_path / "m.toml"))
        estimates = estimates_of(run, user)
        [p] = run.doc["positions"]  # type: ignore[index]
        ratio = realised_volatility(ratio_history(eth[-500:], usdc[-500:]))
        assert ratio is not None
        expected = math.hypot(SIGMA, 0.05)
        print(f"ratio sigma {ratio.sigma_annual:.4f} (walks: {expected:.4f}) from {ratio.samples} returns")
        assert abs(ratio.sigma_annual - expected) < 3 * expected / math.sqrt(2 * ratio.samples)
        distance = math.log(p["health_raw"] / WAD)
        for e in estimates:
            assert e["model"] == CLOSED_FORM and e["samples"] == ratio.samples, e
            assert e["sigma_annual"] == pytest.approx(ratio.sigma_annual)
            assert e["probability"] == pytest.approx(first_passage(distance, ratio.sigma_annual, e["horizon_s"]))
            assert set(e["feeds"].values()) >= {base.address, quote.address}
        print("probabilities:", [(e["horizon_s"], round(e["probability"], 5)) for e in estimates])
    finally:
        revert_snapshot(anvil.w3, snap)


def test_liquity_v2_on_ethereum_names_its_weth_branchs_price_feed_from_the_protocols_file() -> None:
    """The stock deployment needs no key: protocols/liquity_v2.toml names branch 0's WETHPriceFeed."""
    from watcher.adapters.base import Account
    from watcher.check import make_reader
    from watcher.config import parse_config, resolve_deployments

    owner = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    cfg = parse_config(
        {
            "chains": {"ethereum": {"chain_id": 1, "rpc_urls": ["http://127.0.0.1:1"]}},
            "deployments": [{"protocol": "liquity_v2", "chains": ["ethereum"], "troves": [7]}],
            "accounts": [{"address": owner, "label": "main"}],
        }
    )
    [dep] = resolve_deployments(cfg)
    reader = make_reader(dep, [Account(owner, "main")])
    assert reader.eth_usd_feeds == {0: "0xCC5F8102eb670c89a4a3c567C13851260303c24F"}  # type: ignore[attr-defined]
