"""Maker owners with many vaults, against our dss STAND-INs (DssCdpManager and GetCdps stand-ins, not MakerDAO's
contracts): 500 vaults of one owner read and valued on the first check through GetCdps, and a clear unknown
reason when no GetCdps is configured and the manager's list is too long to walk in one check.
"""

from __future__ import annotations

import time

from tests.test_maker_standin import MakerStandInWatcher
from watcher.check import run_check
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import Calldata, Tx, revert_snapshot, send_txs, take_snapshot
from watcher.devchain.maker import GAS, WAD, deploy_maker_stand_in, ilk32, new_owners

N = 500


def test_500_vaults_of_one_owner_on_the_first_check(anvil: Anvil) -> None:
    w3 = anvil.w3
    snap = take_snapshot(w3)
    try:
        system = deploy_maker_stand_in(w3)
        owner, other = new_owners(2, "many")
        mcd, vcd = Calldata(system.abis["DssCdpManagerStandIn"]), Calldata(system.abis["VatStandIn"])
        ilks = ["ETH-A" if i % 3 else "WBTC-A" for i in range(N)]
        opens = [
            Tx(system.admin, system.manager.address, mcd.encode("open", ilk32(k), owner), GAS, "open") for k in ilks
        ]
        send_txs(w3, opens)
        cdps = list(range(1, N + 1))
        assert int(system.manager.functions.count(owner).call()) == N
        # 1 ETH with 500..1499 DAI; 0.1 WBTC with 1,000..1,999 DAI: each vault its own debt, all safe
        urns = [system.manager.functions.urns(c).call() for c in cdps]
        place = [
            Tx(
                system.admin,
                system.vat.address,
                vcd.encode(
                    "setUrn",
                    ilk32(k),
                    u,
                    WAD if k == "ETH-A" else WAD // 10,
                    (500 + c if k == "ETH-A" else 1000 + c) * WAD,
                ),
                GAS,
                "setUrn",
            )
            for c, k, u in zip(cdps, ilks, urns, strict=True)
        ]
        send_txs(w3, place)
        watcher = MakerStandInWatcher(system, [owner])
        t0 = time.perf_counter()
        first = watcher.check()
        seconds = time.perf_counter() - t0
        st = first.stats["local"]
        by_cdp = {p.details["cdp"]: p for p in first.positions}
        assert sorted(by_cdp) == cdps and not first.unreadable
        for c, k in zip(cdps, ilks, strict=True):
            p = by_cdp[c]
            assert p.details["ilk"] == k and p.account == owner and p.health is not None and not p.liquidatable
            assert p.details["art"] == (500 + c if k == "ETH-A" else 1000 + c) * WAD
        # The whole list in round 1 (GetCdps, with every urn and ilk), the urns and ilks in round 2, the OSMs,
        # Clippers and joins they point to in round 3.
        assert st.rounds == 3, st
        steady = watcher.check().stats["local"]
        assert steady.rounds == 1 and steady.eth_calls == 1
        # A vault given away changes the fingerprint: the list is read again whole in the next round.
        system.give(cdps[250], other)
        moved = watcher.check()
        assert len(moved.positions) == N - 1 and cdps[250] not in {p.details["cdp"] for p in moved.positions}
        print(
            f"maker {N} vaults of one owner, first check: {st.rounds} rounds, {st.eth_calls} eth_calls, {st.calls} "
            f"calls, {seconds:.2f} s; steady: {steady.rounds} round, {steady.eth_calls} eth_call, {steady.calls} "
            f"calls; after a give: {moved.stats['local'].rounds} rounds"
        )
        # Without GetCdps the manager's list would take ~250 rounds to walk: the owner is unknown, saying why,
        # while an owner with few vaults is still read by walking.
        few = new_owners(1, "few")[0]
        for _ in range(5):
            system.open("ETH-A", few)
        walker = MakerStandInWatcher(system, [owner, few], get_cdps=False)
        fallback = run_check({"local": walker.client}, [walker.reader])
        assert {p.account for p in fallback.positions} == {few} and len(fallback.positions) == 5
        [unknown] = fallback.unreadable
        assert unknown.accounts[0].address == owner
        assert f"owns {N - 1} vaults" in unknown.reason and "configure get_cdps" in unknown.reason
    finally:
        revert_snapshot(w3, snap)
