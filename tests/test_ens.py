"""ENS names as accounts, on anvil with our ENS stand-in (EnsStandIn.sol: a registry and a resolver, open setters).

`watcher check` resolves `name.eth` through the registry at start and shows the name beside the address;
`watcher run` looks again every `ens.refresh` seconds, and a name that stops resolving (or moves) keeps its address
with a warning: a log line and an `ens` entry in /health that makes the watcher degraded, never a silent drop.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.configs import merge, write_toml
from tests.processes import check_json, wait_for
from tests.run_harness import RunSetup, run_market, run_setup, telegram_standin
from watcher.devchain.ens import EnsStandIn, deploy_ens_stand_in
from watcher.ens import namehash, normalize

__all__ = ["run_market", "run_setup", "telegram_standin"]  # fixtures, imported for pytest

NAME = "borrower.eth"


def test_namehash_is_eip_137s() -> None:
    # the examples of EIP-137
    assert namehash("") == b"\0" * 32
    assert namehash("eth").hex() == "93cdeb708b7545dc668eb9280176169d1c33cfd8ed6f04690a0bcc88a93fc4ae"
    assert namehash("foo.eth").hex() == "de9b09fd7c5f901e23a3f19fecc54828e9c848539801e86591bd9801b019f84f"


def test_names_are_lower_cased_and_a_malformed_one_is_refused() -> None:
    assert normalize("Vitalik.ETH") == "vitalik.eth"
    for bad in ("bad..eth", "-x.eth", "emoji😀.eth"):
        with pytest.raises(ValueError, match="neither an address"):
            normalize(bad)


@pytest.fixture
def ens(run_setup: RunSetup) -> Iterator[EnsStandIn]:
    """The stand-in on the session anvil (rolled back with the market), borrower.eth pointing at the borrower."""
    stand_in = deploy_ens_stand_in(run_setup.anvil.w3)
    stand_in.set_name(NAME, run_setup.borrower)
    yield stand_in


def named_config(s: RunSetup, ens: EnsStandIn, name: str = "ens.toml", **ens_keys: Any) -> Path:
    """The harness config watching borrower.eth (label "me") through the stand-in registry on the local chain."""
    parts = merge(s.parts(), {"ens": {"chain": "local", "registry": ens.registry.address} | ens_keys})
    parts["accounts"] = [{"address": "Borrower.eth", "label": "me"}]
    return write_toml(s.tmp_path / name, parts)


def test_watcher_check_resolves_the_name_and_shows_it_beside_the_address(run_setup: RunSetup, ens: EnsStandIn) -> None:
    run = check_json(named_config(run_setup, ens))
    assert run.code == 0, run.stderr
    [p] = run.doc["positions"]
    assert p["account"] == run_setup.borrower and p["label"] == f"me ({NAME})"


@pytest.mark.parametrize("how", ["clear_resolver", "clear_addr"])
def test_a_name_that_does_not_resolve_at_start_is_one_line_and_exit_2(
    run_setup: RunSetup, ens: EnsStandIn, how: str
) -> None:
    getattr(ens, how)(NAME)
    run = check_json(named_config(run_setup, ens))
    assert run.code == 2 and run.doc is None
    [line] = run.stderr.splitlines()
    why = "no resolver set in the ENS registry" if how == "clear_resolver" else "its resolver has no ETH address"
    assert line.startswith(f"watcher: error: accounts[0].address: {NAME}: {why}"), line


def test_a_name_without_an_ens_chain_is_one_line_and_exit_2(run_setup: RunSetup) -> None:
    parts = run_setup.parts()
    parts["accounts"] = [{"address": NAME}]
    run = check_json(write_toml(run_setup.tmp_path / "noens.toml", parts))
    assert run.code == 2
    assert run.stderr.splitlines() == [
        "watcher: error: accounts[0].address: an ENS name needs a chain with chain_id = 1 under [chains], or ens.chain"
    ]


def test_a_name_that_stops_resolving_keeps_its_address_and_degrades_health(
    run_setup: RunSetup, ens: EnsStandIn
) -> None:
    w = run_setup.start(named_config(run_setup, ens, refresh=0.5))
    health = w.get("/health")
    assert health["ens"][NAME] | {"checked": 0} == {
        "address": run_setup.borrower,
        "ok": True,
        "error": "",
        "checked": 0,
    }
    wait_for(lambda: w.get("/health")["status"] == "ok", 30, what="a healthy start")

    ens.clear_resolver(NAME)
    bad = wait_for(lambda: not (h := w.get("/health"))["ens"][NAME]["ok"] and h, 15, what="the lookup to fail")
    assert bad["status"] == "degraded"
    assert (
        bad["ens"][NAME]["error"] == f"{NAME}: no resolver set in the ENS registry; still watching {run_setup.borrower}"
    )
    assert w.logs("ens name", ens=NAME, level="warning")
    # still watched: its position is read at the old address
    positions = w.get("/positions")["positions"]
    assert [p["account"] for p in positions] == [run_setup.borrower]

    other = run_setup.market.new_users(1)[0]
    ens.set_name(NAME, other)
    moved = wait_for(
        lambda: "now resolves" in (e := w.get("/health")["ens"][NAME])["error"] and e, 15, what="the move to show"
    )
    assert moved["error"] == f"{NAME} now resolves to {other}; still watching {run_setup.borrower} until a restart"

    ens.set_name(NAME, run_setup.borrower)
    wait_for(lambda: w.get("/health")["ens"][NAME]["ok"], 15, what="the name to resolve again")
    wait_for(lambda: w.get("/health")["status"] == "ok", 15, what="health to recover")
