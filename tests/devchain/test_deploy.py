"""The local-chain fixtures: real Aave v3.0 and v3.6 markets on eth-tester and anvil behave like Aave."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from web3 import Web3

from watcher.devchain import node
from watcher.devchain.aave import EMODE_STABLECOINS, RESERVES, AaveMarket, PositionSpec
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import (
    advance_time,
    deploy_batch_reader,
    is_eth_tester,
    revert_snapshot,
    take_snapshot,
)
from watcher.devchain.node import DevchainError
from watcher.devchain.solc import batch_reader_artifact, compile_standard_json

WAD = 10**18
RAY = 10**27
SPEC = {r.symbol: r for r in RESERVES}
SECONDS_PER_YEAR = 365 * 86_400


def base_value(symbol: str, amount: int) -> int:
    """Value of a token amount in the market's base currency (USD, 8 decimals), as Aave floors it."""
    return amount * SPEC[symbol].price // 10 ** SPEC[symbol].decimals


def hand_health_factor(version: str, collateral: int, debt: int, lt_bps: int) -> int:
    """Aave's health factor for one collateral, with each version's rounding (half-up wad/percent math)."""
    if version == "3.0":
        # v3.0: (collateral.percentMul(avgLT)).wadDiv(debt)
        weighted = (collateral * lt_bps + 5_000) // 10_000
        return (weighted * WAD + debt // 2) // debt
    # v3.6: (sum(collateral_i * lt_i)).wadDiv(debt) / 100_00
    return ((collateral * lt_bps * WAD + debt // 2) // debt) // 10_000


def test_pool_revision(aave_market: AaveMarket) -> None:
    assert aave_market.revision() == {"3.0": 1, "3.6": 10}[aave_market.version]


def test_market_listing(aave_market: AaveMarket) -> None:
    m = aave_market
    assert list(m.assets) == [r.symbol for r in RESERVES]
    reserves = [Web3.to_checksum_address(a) for a in m.pool.functions.getReservesList().call()]
    assert reserves == list(m.assets.values())
    for r in RESERVES:
        assert m.decimals[r.symbol] == r.decimals == m.tokens[r.symbol].functions.decimals().call()
        assert m.price(r.symbol) == r.price
        cfg = m.data_provider.functions.getReserveConfigurationData(m.assets[r.symbol]).call()
        # (decimals, ltv, liquidationThreshold, liquidationBonus, reserveFactor, usageAsCollateral, borrowing, ...)
        assert cfg[:7] == [r.decimals, r.ltv, r.liquidation_threshold, r.liquidation_bonus, 1000, True, True]
    assert m.oracle.functions.BASE_CURRENCY_UNIT().call() == 10**8


def test_health_factor_matches_hand_calculation(aave_market: AaveMarket) -> None:
    m = aave_market
    user = m.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
    block = m.w3.eth.block_number
    coll, debt, available, lt, ltv, hf = m.account_data(user, block)
    assert coll == base_value("WETH", 10 * 10**18) == 20_000 * 10**8
    assert debt == base_value("USDC", 12_000 * 10**6) == 12_000 * 10**8
    assert (ltv, lt) == (8000, 8250)
    assert available == coll * 8000 // 10_000 - debt
    # 10 * 2000 * 0.825 / 12000 = 1.375, exactly, on both versions.
    assert hf == hand_health_factor(m.version, coll, debt, lt) == 1_375 * 10**15
    assert m.account_data(user, block) == (coll, debt, available, lt, ltv, hf)  # pinned reads agree


def test_price_drop_lowers_health(aave_market: AaveMarket) -> None:
    m = aave_market
    user = m.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
    before = m.health_factor(user)
    m.set_price("WETH", 1_500 * 10**8)
    block = m.w3.eth.block_number
    assert m.price("WETH", block) == 1_500 * 10**8
    coll, debt, _, lt, _, hf = m.account_data(user, block)
    assert coll == 15_000 * 10**8
    assert hf < before
    # eth-tester stamps blocks with wall-clock time, so some debt interest may have accrued since the borrow;
    # the health factor still follows from the pool's own totals to the wei.
    assert hf == hand_health_factor(m.version, coll, debt, lt)
    assert abs(hf - 1_03125 * 10**13) <= 10**11
    # A price just under the 1.0 boundary makes the position liquidatable.
    m.set_price("WETH", 12_000 * 10**8 * 10_000 // (10 * 8250) - 1)
    assert m.health_factor(user) < WAD


def ray_mul(a: int, b: int) -> int:
    """WadRayMath.rayMul: half-up."""
    return (a * b + RAY // 2) // RAY


def compounded_interest(version: str, rate: int, dt: int) -> int:
    """MathUtils.calculateCompoundedInterest of each version, in integers (ray)."""
    if dt == 0:
        return RAY
    if version == "3.0":
        # v3.0 truncates basePowerThree to zero at ordinary rates: the cubic term is effectively missing.
        base_two = ray_mul(rate, rate) // (SECONDS_PER_YEAR * SECONDS_PER_YEAR)
        base_three = ray_mul(base_two, rate) // SECONDS_PER_YEAR
        second = dt * (dt - 1) * base_two // 2
        third = dt * (dt - 1) * max(dt - 2, 0) * base_three // 6
        return RAY + rate * dt // SECONDS_PER_YEAR + second + third
    x = rate * dt // SECONDS_PER_YEAR
    return RAY + x + ray_mul(x, x // 2 + ray_mul(x, x // 6))


def test_debt_grows_with_time(aave_market: AaveMarket) -> None:
    m = aave_market
    user = m.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
    w3 = m.w3
    block = w3.eth.block_number
    debt0 = m.debt(user, "USDC", block)
    hf0 = m.health_factor(user, block)
    reserve = m.pool.functions.getReserveData(m.assets["USDC"]).call(block_identifier=block)
    # ReserveData(Legacy): [3] variableBorrowIndex, [4] currentVariableBorrowRate, [6] lastUpdateTimestamp.
    index, rate, updated = int(reserve[3]), int(reserve[4]), int(reserve[6])
    # The admin tops liquidity up to twice the borrow: 50% usage on the 90%/0/4%/60% curve = 2.22% a year.
    assert abs(rate - 4 * RAY // 100 * 5 // 9) <= 10**22
    end_ts = advance_time(w3, SECONDS_PER_YEAR)
    later = w3.eth.block_number
    debt1 = m.debt(user, "USDC", later)
    assert debt1 > debt0
    assert m.health_factor(user, later) < hf0
    vdebt = w3.eth.contract(address=m.variable_debt_tokens["USDC"], abi=m.artifacts["variable_debt"].abi)
    scaled = int(vdebt.functions.scaledBalanceOf(user).call(block_identifier=later))
    new_index = ray_mul(compounded_interest(m.version, rate, end_ts - updated), index)
    product = scaled * new_index
    # v3.0 rounds the balance half-up, v3.6 up.
    by_hand = ray_mul(scaled, new_index) if m.version == "3.0" else -(-product // RAY)
    assert debt1 == by_hand
    # ~2.25% a year compounded, as the real-number formula says to within the polynomial's truncation.
    assert abs(debt1 - debt0 * math.exp(rate / RAY * (end_ts - updated) / SECONDS_PER_YEAR)) <= debt0 * 1e-5
    # The pool values debt in base currency from the same balance (v3.6 rounds debt up).
    assert abs(m.account_data(user, later)[1] - base_value("USDC", debt1)) <= 1


def test_emode_stablecoins(aave_market: AaveMarket) -> None:
    m = aave_market
    e = EMODE_STABLECOINS
    user = m.open_position(None, {"USDC": 10_000 * 10**6}, {"DAI": 9_000 * 10**18}, emode=e.category_id)
    coll, debt, _, lt, ltv, hf = m.account_data(user)
    assert m.user_emode(user) == e.category_id
    assert (ltv, lt) == (e.ltv, e.liquidation_threshold)
    assert hf == hand_health_factor(m.version, coll, debt, lt)
    assert 1_055 * 10**15 < hf < 1_056 * 10**15  # 10000 * 0.95 / 9000
    # Outside eMode the same position is over the 77% LTV and 80% threshold: leaving is refused.
    with pytest.raises(DevchainError):
        m.set_user_emode(user, 0)


def test_helpers_repay_supply_withdraw(aave_market: AaveMarket) -> None:
    m = aave_market
    user = m.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6})
    hf0 = m.health_factor(user)
    m.repay(user, "USDC", 2_000 * 10**6)
    hf1 = m.health_factor(user)
    assert hf1 > hf0
    m.supply(user, "WBTC", 10**8)
    hf2 = m.health_factor(user)
    assert hf2 > hf1
    m.borrow(user, "DAI", 1_000 * 10**18)
    assert m.health_factor(user) < hf2
    m.repay(user, "DAI", 2**256 - 1)
    m.repay(user, "USDC", 2**256 - 1)
    assert m.debt(user, "USDC") == 0 and m.debt(user, "DAI") == 0
    assert m.health_factor(user) == 2**256 - 1
    m.withdraw(user, "WETH", 2**256 - 1)
    assert m.account_data(user)[0] == base_value("WBTC", 10**8)


def test_bulk_open(aave_market: AaveMarket) -> None:
    m = aave_market
    # py-evm runs (and signs) ~10 txs a second, anvil thousands: size the batch to the chain.
    users = m.new_users(4 if is_eth_tester(m.w3) else 60)
    specs = [
        PositionSpec(u, {"WETH": 10**18 + i, "WBTC": 10**6}, {"USDC": (500 + i) * 10**6}, 0)
        if i % 3
        else PositionSpec(u, {"DAI": (1_000 + i) * 10**18}, {"USDC": 900 * 10**6}, 1)
        for i, u in enumerate(users)
    ]
    opened = m.open_positions_bulk(specs)
    assert opened == users
    block = m.w3.eth.block_number
    for i, (spec, user) in enumerate(zip(specs, users, strict=True)):
        coll, debt, _, lt, _, hf = m.account_data(user, block)
        values = {s: base_value(s, a) for s, a in spec.supplies.items()}
        # v3.6 rounds aToken balances down, so collateral may be one base unit short of the supplied value.
        assert 0 <= sum(values.values()) - coll <= 1, (i, coll)
        assert debt >= base_value("USDC", spec.borrows["USDC"])
        assert m.user_emode(user, block) == spec.emode
        if spec.emode:
            assert lt == EMODE_STABLECOINS.liquidation_threshold
        else:
            weighted = sum(v * SPEC[s].liquidation_threshold for s, v in values.items()) // sum(values.values())
            assert abs(lt - weighted) <= 1
        if m.version == "3.0":
            assert hf == hand_health_factor("3.0", coll, debt, lt)
        assert hf > WAD


def test_batch_reader_matches_direct_reads(aave_market: AaveMarket) -> None:
    m = aave_market
    users = [m.open_position(None, {"WETH": 10**18}, {"USDC": (100 + i) * 10**6}) for i in range(2)]
    abi, _ = batch_reader_artifact()
    reader = m.w3.eth.contract(address=deploy_batch_reader(m.w3), abi=abi)
    block = m.w3.eth.block_number
    calls = [(m.pool.address, False, m.pool.encode_abi("getUserAccountData", args=[u])) for u in users]
    results = reader.functions.aggregate3(calls).call(block_identifier=block)
    for user, (ok, data) in zip(users, results, strict=True):
        assert ok
        decoded = m.w3.codec.decode(["uint256"] * 6, data)
        assert tuple(decoded) == m.account_data(user, block)


def test_chain_snapshot_and_time(chain: Web3) -> None:
    w3 = chain
    assert is_eth_tester(w3) or w3.eth.chain_id == 31337
    start = w3.eth.block_number
    snap = take_snapshot(w3)
    ts0 = int(w3.eth.get_block("latest")["timestamp"])
    ts1 = advance_time(w3, 3_600)
    assert ts1 >= ts0 + 3_600
    assert w3.eth.block_number == start + 1
    revert_snapshot(w3, snap)
    assert w3.eth.block_number == start


def test_anvil_fixture(anvil: Anvil) -> None:
    assert anvil.url.startswith("http://127.0.0.1:")
    assert anvil.w3.eth.get_block("latest")["gasLimit"] == 1_000_000_000
    assert anvil.proc is not None and anvil.proc.poll() is None


def test_anvil_stops_on_exit() -> None:
    with Anvil(chain_id=4242) as node_:
        assert node_.w3.eth.chain_id == 4242
        proc = node_.proc
    assert proc is not None and proc.poll() is not None


def test_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MARGIN_WATCHER_CACHE", str(tmp_path / "c"))
    assert node.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MARGIN_WATCHER_CACHE")
    assert node.cache_dir() == Path.home() / ".cache" / "margin-watcher"


def test_node_packages_installed() -> None:
    modules = node.node_modules()
    for spec in node.NODE_PACKAGES:
        name, _, version = spec.rpartition("@")
        assert json.loads((modules / name / "package.json").read_text())["version"] == version
    binary = node.anvil_binary()
    assert binary.is_file() and os.access(binary, os.X_OK)


def test_solc_errors_are_reported() -> None:
    bad = {
        "language": "Solidity",
        "sources": {"Bad.sol": {"content": "pragma solidity ^0.8.0; contract Bad { function f() { x = 1; } }"}},
        "settings": {"outputSelection": {"*": {"*": ["abi"]}}},
    }
    with pytest.raises(DevchainError, match="solc"):
        compile_standard_json(bad)
