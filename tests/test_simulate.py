"""`watcher simulate` as a process with a config file, against the real Aave v3.0/v3.6 and Morpho Blue on anvil.

The truth is the contract's: after `watcher simulate` answers, the shocked price is set on the chain's oracle (in a
snapshot, rolled back) and Aave's getUserAccountData health factor must equal ours to the wei, and Morpho's
liquidate() must succeed exactly where we say liquidatable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from tests.aave_helpers import batch_reader
from tests.processes import REPO_ROOT, child_env
from watcher.devchain.aave import AaveMarket, PositionSpec, deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.morpho import MorphoMarket, deploy_morpho
from watcher.model import WAD

USDC, WETH = 10**6, 10**18


def simulate(config: Path, *args: str) -> tuple[int, Any, str]:
    """`watcher simulate --config F ARGS`: exit code, parsed stdout (JSON when --json), stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "simulate", "--config", str(config), *args],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    doc = json.loads(proc.stdout) if "--json" in args and proc.stdout.strip() else proc.stdout
    return proc.returncode, doc, proc.stderr


def write_config(
    path: Path, anvil: Anvil, aave: AaveMarket | None, morpho: MorphoMarket | None, users: list[str]
) -> Path:
    """A config watching `users` on the session anvil, in Aave, Morpho or both."""
    deployments: list[dict[str, Any]] = []
    if aave is not None:
        provider = aave.addresses_provider
        deployments.append(
            {"protocol": "aave_v3", "name": "aave_local", "chains": ["local"], "pool_addresses_provider": provider}
        )
    if morpho is not None:
        deployments.append(
            {
                "protocol": "morpho_blue",
                "name": "morpho_local",
                "chains": ["local"],
                "address": morpho.morpho.address,
                "markets": [morpho.market_id],
            }
        )
    doc = {
        "thresholds": {"warn": 1.25, "critical": 1.1, "target": 1.5},
        "chains": {
            "local": {
                "chain_id": anvil.chain_id,
                "rpc_urls": [anvil.url],
                "multicall": batch_reader(anvil.w3),
                "max_block_age": 86_400.0,  # anvil mines only on transactions: its head ages
            }
        },
        "deployments": deployments,
        "accounts": [{"address": u, "label": f"user{i}"} for i, u in enumerate(users)],
    }
    path.write_text(tomlkit.dumps(doc))
    return path


@pytest.fixture
def rollback(anvil: Anvil) -> Iterator[None]:
    snap = take_snapshot(anvil.w3)
    yield
    revert_snapshot(anvil.w3, snap)


def _on_chain(anvil: Anvil, shocks: list[tuple[Any, int]]) -> tuple[int, int]:
    """Apply (setter, price) on chain in a snapshot; the block and its timestamp, for reads pinned there."""
    for setter, price in shocks:
        setter(price)
    block = anvil.w3.eth.get_block("latest")
    return int(block["number"]), int(block["timestamp"])


@pytest.mark.parametrize("version", ["3.0", "3.6"])
def test_aave_health_after_a_shock_is_the_pools_to_the_wei(
    anvil: Anvil, rollback: None, tmp_path: Path, version: str
) -> None:
    aave = deploy_aave(anvil.w3, version)
    users = aave.open_positions_bulk(
        [
            PositionSpec(u, s, b)
            for u, (s, b) in zip(
                aave.new_users(4),
                [
                    ({"WETH": 10 * WETH}, {"USDC": 5_000 * USDC}),  # 3.3 -> 2.64: ok
                    ({"WETH": 10 * WETH}, {"USDC": 11_000 * USDC}),  # 1.5 -> 1.2: warn
                    ({"WETH": 10 * WETH}, {"USDC": 15_000 * USDC}),  # 1.1 -> 0.88: liquidatable
                    ({"WETH": 5 * WETH, "WBTC": 10**8}, {"USDC": 30_000 * USDC, "DAI": 5_000 * WETH}),  # 1.52
                ],
                strict=True,
            )
        ]
    )
    config = write_config(tmp_path / "c.toml", anvil, aave, None, users)
    eth, btc = aave.price("WETH"), aave.price("WBTC")
    # The contract first: the shocked prices on the oracle, in a snapshot; the time they take effect is kept.
    snap = take_snapshot(anvil.w3)
    setters = [(lambda p: aave.set_price("WETH", p), eth * 8000 // 10000)]
    setters.append((lambda p: aave.set_price("WBTC", p), btc * 9000 // 10000))
    block, when = _on_chain(anvil, setters)
    pool_hf = {u: aave.health_factor(u, block) for u in users}
    revert_snapshot(anvil.w3, snap)

    code, doc, err = simulate(config, "--shock", "WETH=-20%", "--shock", "WBTC:-10", "--at", str(when), "--json")
    assert err == "" and code == 1, err  # something is at warn or worse after the shock
    by_account = {p["account"]: p for p in doc["positions"]}
    assert set(by_account) == set(users)
    for u in users:
        p = by_account[u]
        assert p["status"] == "shocked" and p["at"] == when
        assert p["health_after"]["raw"] == pool_hf[u], (version, u, p["health_after"], pool_hf[u])
        assert p["liquidatable_after"] == (pool_hf[u] < WAD)
    moved = {m["symbol"]: (m["before_raw"], m["after_raw"]) for m in by_account[users[3]]["moved"]}
    assert moved == {"WETH": (eth, eth * 8000 // 10000), "WBTC": (btc, btc * 9000 // 10000)}
    levels = [by_account[u]["level_after"] for u in users]
    assert levels[:3] == ["ok", "warn", "liquidatable"]
    # The advice after the shock restores the target on the shocked state: each top-up's health is >= 1.5.
    adv = by_account[users[2]]["advice_after"]
    assert adv["top_ups"] and all(a["health_after_raw"] >= 3 * WAD // 2 for a in adv["top_ups"] if a["feasible"])
    assert adv["repayments"][0]["feasible"]

    # The table says the same in words, and the exit code follows the worst level after the shock.
    code, text, err = simulate(config, "--shock", "WETH -20%")
    assert code == 1 and "WETH -20.00%" in text and "LIQUIDATABLE" in text, (text, err)
    code, _, err = simulate(config, "--shock", "WETH=+20%", "--shock", "WBTC=+20%")
    assert code == 0, err  # every position is above warn at +20 %
    code, doc, _ = simulate(config, "--shock", "USDC=-10%", "--json")  # debt cheaper: health rises
    assert code == 1 and all(p["health_after"]["raw"] > p["health_before"]["raw"] for p in doc["positions"])


def test_morpho_liquidate_succeeds_exactly_where_we_say(anvil: Anvil, rollback: None, tmp_path: Path) -> None:
    morpho = deploy_morpho(anvil.w3, liquidity=100_000 * USDC)
    # At 2000 USDC/WETH and LLTV 0.86, 1 WETH may borrow 1720 USDC; at -10 % (1800), 1548.
    borrows = [1_400 * USDC, 1_547 * USDC, 1_548 * USDC - 1, 1_548 * USDC + 1, 1_600 * USDC]
    users = morpho.new_users(len(borrows))
    for u, b in zip(users, borrows, strict=True):
        morpho.open_position(u, WETH, b)
    liquidator = morpho.liquidator()
    config = write_config(tmp_path / "m.toml", anvil, None, morpho, users)
    shocked = morpho.price() * 9000 // 10000
    snap = take_snapshot(anvil.w3)
    block, when = _on_chain(anvil, [(morpho.set_price, shocked)])
    contract = {u: morpho.can_liquidate(liquidator, u, block) for u in users}
    revert_snapshot(anvil.w3, snap)

    collateral = morpho.collateral_token.address
    code, doc, err = simulate(config, "--shock", f"{collateral}=-10%", "--at", str(when), "--json")
    assert err == "" and code == 1, err
    ours = {p["account"]: p for p in doc["positions"] if p["protocol"] == "morpho_local"}
    assert set(ours) == set(users), (doc, users)
    assert {u: ours[u]["liquidatable_after"] for u in users} == contract
    assert set(contract.values()) == {True, False}  # the shock splits them: the comparison is not vacuous
    for u in users:
        [moved] = ours[u]["moved"]
        assert (moved["asset"], moved["before_raw"], moved["after_raw"]) == (collateral, morpho.price(), shocked)
    # The loan token is the unit Morpho prices in: a shock of it is named per position, not silently dropped.
    loan = morpho.loan_token.address
    code, doc, _ = simulate(config, "--shock", f"{loan}=-10%", "--json")
    notes = [p for p in doc["positions"] if p["protocol"] == "morpho_local"]
    assert all(p["status"] == "not shockable" and "not applied" in p["notes"][0] for p in notes)
    assert code == 1  # unshocked, the fullest positions are already critical


def test_bad_shocks_and_config_exit_2_naming_the_value(anvil: Anvil, rollback: None, tmp_path: Path) -> None:
    aave = deploy_aave(anvil.w3, "3.0")
    [user] = aave.open_positions_bulk([PositionSpec(aave.new_user(), {"WETH": WETH}, {"USDC": 100 * USDC})])
    config = write_config(tmp_path / "c.toml", anvil, aave, None, [user])
    for args, named in [
        (("--shock", "WETH=-100%"), "WETH=-100%"),
        (("--shock", "WETH"), "'WETH'"),
        (("--shock", "DOGE=-5%"), "'DOGE'"),
        (("--shock", "WETH=-5%", "--at", "next week"), "next week"),
        ((), "--shock"),
    ]:
        code, _, err = simulate(config, *args)
        assert code == 2 and named in err and "Traceback" not in err, (args, err)
    code, _, err = simulate(tmp_path / "missing.toml", "--shock", "WETH=-5%")
    assert code == 2 and "missing.toml" in err
