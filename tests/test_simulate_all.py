"""A shock of every collateral asset of every on-chain protocol at once (the real Aave v3.0 and Morpho Blue beside
our stand-ins of Compound v3, Maker, Liquity v1/v2, GMX v2, Synthetix perps v3): no position is silently unchanged.
"""

from __future__ import annotations

from web3 import Web3

from tests.aave_helpers import batch_reader
from watcher.chain import ChainClient
from watcher.check import run_check
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.everything import deploy_everything
from watcher.model import WAD
from watcher.risk import Thresholds
from watcher.whatif import Shock, simulate, verdict

TH = Thresholds(125 * WAD // 100, 110 * WAD // 100, 150 * WAD // 100)


def test_every_protocol_is_shocked_or_says_why(chain: Web3) -> None:
    snap = take_snapshot(chain)
    try:
        world = deploy_everything(chain, per_protocol=2)
        client = ChainClient("local", chain.eth.chain_id, [("local", chain)], batch_reader(chain))
        result = run_check({"local": client}, world.readers())
    finally:
        revert_snapshot(chain, snap)
    assert not result.unreadable, result.unreadable
    positions = [p for p in result.positions if p.health is not None]
    # Every collateral token by address (symbols repeat across the stand-ins' own tokens), 30 % down.
    assets = sorted({leg.asset for p in positions for leg in p.collateral if leg.asset.startswith("0x")})
    outcomes = simulate(positions, [Shock(a, -3000) for a in assets], None, TH)
    statuses: dict[str, set[str]] = {}
    for o in outcomes:
        p = o.position
        statuses.setdefault(p.protocol, set()).add(o.status)
        if o.status == "shocked":
            assert o.health_after is not None and o.health_before is not None
            assert o.health_after < o.health_before, (p.protocol, p.account, o.moved)  # collateral fell: health did
            if len(o.moved) == 1 and p.simulator is not None:  # the verdict is the simulator's own at that price
                m = o.moved[0]
                assert o.liquidatable_after == verdict(p.simulator.with_price(m.asset, m.after))
        else:
            assert o.notes or o.status == "unaffected", (p.protocol, o)
    print({k: sorted(v) for k, v in sorted(statuses.items())})
    assert statuses["synthetix_perps_v3"] == {"unaffected"}
    # Each lending protocol moves with its collateral, GMX with its collateral token's price; Synthetix's collateral
    # is snxUSD (no token address here): its accounts are unaffected by these shocks.
    for protocol in ("aave_v3", "morpho_blue", "compound_v3", "maker", "liquity_v1", "liquity_v2", "gmx_v2"):
        assert statuses[protocol] == {"shocked"}, (protocol, statuses)
