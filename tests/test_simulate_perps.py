"""What-if shocks on perps, against our GMX v2 and Synthetix perps v3 stand-in contracts (not the protocols' own).

The shocked price is set on the stand-in's feed in a snapshot; the stand-in's own check (isPositionLiquidatable,
canLiquidate) at that block must agree with the verdict `simulate` gives on the simulator.
"""

from __future__ import annotations

from web3 import Web3

from tests.test_gmx_v2_standin import StandInWatcher as GmxWatcher
from tests.test_gmx_v2_standin import _market_name, _setup_positions, _stand_in_check
from tests.test_synthetix_perps_standin import StandInWatcher as SnxWatcher
from watcher.devchain.comet import new_addresses
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.gmx import deploy_gmx_stand_in
from watcher.devchain.synthetix import ETH, deploy_synthetix_stand_in, owner_addresses
from watcher.model import WAD
from watcher.risk import Thresholds
from watcher.whatif import At, parse_shock, simulate

TH = Thresholds(125 * WAD // 100, 110 * WAD // 100, 150 * WAD // 100)
D18 = 10**18


def test_gmx_shocked_verdicts_equal_the_stand_ins_check(chain: Web3) -> None:
    gmx = deploy_gmx_stand_in(chain)
    users = new_addresses(4, "gmx")
    _setup_positions(gmx, users)
    positions = GmxWatcher(gmx, users).check().positions
    answer = gmx.answer("WETH")
    seen = []
    for bps in (-500, -1000, -2000, 1000, 2000):
        [shock] = [parse_shock(f"WETH={bps / 100:+g}%")]
        outcomes = {o.position.account: o for o in simulate(positions, [shock], None, TH)}
        snap = take_snapshot(chain)
        try:
            block = gmx.set_answer("WETH", answer * (10_000 + bps) // 10_000)
            for p in positions:
                o = outcomes[p.account]
                legs = [
                    bool(_stand_in_check(gmx, leg.details, p.account, block, gmx.prices_for(name, block))[0])
                    for leg in p.perps
                    if (name := _market_name(gmx, leg.details["market_token"]))
                ]
                eth_legs = [leg for leg in p.perps if leg.market.startswith("WETH/")]
                # only the accounts with an ETH position move (a BTC/USD one backed by USDC does not)
                assert o.status == ("shocked" if eth_legs else "unaffected"), (p.account, o.notes)
                if eth_legs:  # the shocked index price is the feed's, in GMX's units per wei
                    assert any(m.after == gmx.price("WETH", block) for m in o.moved), (
                        o.moved,
                        gmx.price("WETH", block),
                    )
                assert o.liquidatable_after == any(legs), (bps, p.account, o.health_after, legs)
                seen.append(o.liquidatable_after)
        finally:
            revert_snapshot(chain, snap)
    assert True in seen and False in seen  # the shocks split the positions: the comparison is not vacuous


def test_synthetix_shocked_verdicts_equal_can_liquidate(chain: Web3) -> None:
    market = deploy_synthetix_stand_in(chain)
    owners = owner_addresses(3)
    ids = [1, 2, 3]
    market.open_account(1, owners[0], 2_000 * D18)
    market.set_position(1, ETH.market_id, 10 * D18, 1_950 * D18, 5 * D18 // 10, 10**15)
    market.open_account(2, owners[0], 1_200 * D18)
    market.set_position(2, ETH.market_id, -8 * D18, 2_050 * D18, 5 * D18 // 10, 10**15)
    market.open_account(3, owners[0], 6_000 * D18)
    market.set_position(3, ETH.market_id, 15 * D18, 2_010 * D18, 7 * D18 // 10, 10**15)
    positions = list(SnxWatcher(market, ids).positions().values())
    mark = positions[0].perps[0].mark_price
    seen = []
    for bps in (-500, -1000, -1500, -2500, 1000, 2500):
        snap = take_snapshot(chain)
        try:
            shocked = int(mark * D18) * (10_000 + bps) // 10_000
            block = market.set_price(ETH.market_id, shocked)
            when = int(chain.eth.get_block(block)["timestamp"])
            contract = {i: market.can_liquidate(i, block) for i in ids}
        finally:
            revert_snapshot(chain, snap)
        shock = parse_shock(f"ETH:{bps / 100:+g}")
        outcomes = simulate(positions, [shock], At(timestamp=when), TH)
        for o in outcomes:
            i = o.position.details["account_id"]
            assert o.status == "shocked" and [m.after for m in o.moved] == [shocked]
            assert o.liquidatable_after == contract[i], (bps, i, o.health_after)
            seen.append(contract[i])
    assert True in seen and False in seen
