"""Aave v3 and Morpho Blue on one chain, from a config file: one batched eth_call per chain per check for both."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.aave_helpers import batch_reader
from watcher.chain import ChainClient
from watcher.check import build, run_check
from watcher.config import ConfigError, load_config, parse_config, resolve_deployments
from watcher.devchain.aave import deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import revert_snapshot, take_snapshot
from watcher.devchain.morpho import deploy_morpho


def test_aave_and_morpho_share_one_eth_call(anvil: Anvil, tmp_path: Path) -> None:
    w3 = anvil.w3
    snap = take_snapshot(w3)
    try:
        aave = deploy_aave(w3, "3.6")
        morpho = deploy_morpho(w3)
        [user] = morpho.new_users(1)
        aave.open_position(user, {"WETH": 5 * 10**18}, {"USDC": 4_000 * 10**6})
        morpho.open_position(user, 10**18, 1_500 * 10**6)
        cfg = parse_config(
            tomllib.loads(f"""
[chains.local]
chain_id = {anvil.chain_id}
rpc_urls = ["{anvil.url}"]
multicall = "{batch_reader(w3)}"
# anvil mines only on transactions: its head ages between tests and is not a stuck node
max_block_age = 86400

[[deployments]]
protocol = "aave_v3"
name = "aave"
chains = ["local"]
pool_addresses_provider = "{aave.addresses_provider}"

[[deployments]]
protocol = "morpho_blue"
name = "morpho"
chains = ["local"]
morpho = "{morpho.morpho.address}"
markets = ["{morpho.market_id}"]

[[accounts]]
address = "{user}"
label = "both"
""")
        )
        readers = build(cfg)
        c = cfg.chains["local"]
        client = ChainClient.from_urls("local", c.chain_id, [anvil.url], c.multicall, c.call_gas_budget)
        run_check({"local": client}, readers)  # learning rounds
        result = run_check({"local": client}, readers)
        assert not result.unreadable
        assert sorted(p.protocol for p in result.positions) == ["aave", "morpho"]
        assert result.stats["local"].eth_calls == 1 and result.stats["local"].rounds == 1
        by = {p.protocol: p for p in result.positions}
        assert by["aave"].health == aave.account_data(user, by["aave"].block.number)[5]
        assert by["morpho"].key.endswith(morpho.market_id) and not by["morpho"].liquidatable
    finally:
        revert_snapshot(w3, snap)


def test_morpho_deployments_resolve_and_validate(tmp_path: Path) -> None:
    base = """
[chains.ethereum]
chain_id = 1
rpc_urls = ["http://127.0.0.1:1"]

[[deployments]]
protocol = "morpho_blue"
chains = ["ethereum"]
{markets}

[[accounts]]
address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
"""
    mid = "0x" + "ab" * 32
    path = tmp_path / "c.toml"
    path.write_text(base.format(markets=f'markets = ["{mid}"]'))
    [dep] = resolve_deployments(load_config(path))
    assert dep.adapter == "morpho_blue" and dep.address == "0xBBBBBbbBBb9cC5e90e3b3Af64bdAF62C37EEFFCb"
    assert dep.markets == [mid]
    path.write_text(base.format(markets=""))
    with pytest.raises(ConfigError, match=r"deployments\[0\]\.markets: give the ids"):
        resolve_deployments(load_config(path))
    path.write_text(base.format(markets="discover = true"))
    [dep] = resolve_deployments(load_config(path))
    assert dep.markets == [] and dep.discover_from_block == 18883124  # Morpho's deployment block, from protocols/
    path.write_text(base.format(markets="discover = true\ndiscover_from_block = 20000000"))
    [dep] = resolve_deployments(load_config(path))
    assert dep.discover_from_block == 20_000_000
    path.write_text(base.format(markets='markets = ["0x1234"]'))
    with pytest.raises(ConfigError, match=r"deployments\[0\]\.markets\[0\]: '0x1234' is not a market id"):
        resolve_deployments(load_config(path))
