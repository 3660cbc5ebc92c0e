"""The Aave contracts by role: v3.0 from its npm artifacts, v3.6 compiled from its npm sources."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watcher.devchain.aave.specs import VERSIONS
from watcher.devchain.node import DevchainError, node_modules
from watcher.devchain.solc import compile_standard_json, contract_output


@dataclass(frozen=True, slots=True)
class Artifact:
    """ABI, creation bytecode and library link references of one contract."""

    abi: list[dict[str, Any]]
    bytecode: str
    link_references: dict[str, dict[str, list[dict[str, int]]]]


_V30_NAMES = {
    "provider": "PoolAddressesProvider",
    "acl": "ACLManager",
    "pool": "Pool",
    "configurator": "PoolConfigurator",
    "atoken": "AToken",
    "stable_debt": "StableDebtToken",
    "variable_debt": "VariableDebtToken",
    "strategy": "DefaultReserveInterestRateStrategy",
    "oracle": "AaveOracle",
    "data_provider": "AaveProtocolDataProvider",
    "token": "MintableERC20",
    "aggregator": "MockAggregator",
}
_V36_SOURCES = {
    "provider": ("protocol/configuration/PoolAddressesProvider.sol", "PoolAddressesProvider"),
    "acl": ("protocol/configuration/ACLManager.sol", "ACLManager"),
    "pool": ("instances/PoolInstance.sol", "PoolInstance"),
    "configurator": ("instances/PoolConfiguratorInstance.sol", "PoolConfiguratorInstance"),
    "atoken": ("instances/ATokenInstance.sol", "ATokenInstance"),
    "variable_debt": ("instances/VariableDebtTokenInstance.sol", "VariableDebtTokenInstance"),
    "strategy": ("misc/DefaultReserveInterestRateStrategyV2.sol", "DefaultReserveInterestRateStrategyV2"),
    "oracle": ("misc/AaveOracle.sol", "AaveOracle"),
    "data_provider": ("helpers/AaveProtocolDataProvider.sol", "AaveProtocolDataProvider"),
    "token": ("mocks/tokens/MintableERC20.sol", "MintableERC20"),
    "aggregator": ("mocks/oracle/CLAggregators/MockAggregator.sol", "MockAggregator"),
}
# Libraries in deploy order: FlashLoanLogic links BorrowLogic, so it comes after it.
_POOL_LIBS = {
    "3.0": (
        "SupplyLogic",
        "BorrowLogic",
        "LiquidationLogic",
        "EModeLogic",
        "BridgeLogic",
        "PoolLogic",
        "FlashLoanLogic",
    ),
    "3.6": ("SupplyLogic", "BorrowLogic", "LiquidationLogic", "PoolLogic", "FlashLoanLogic"),
}
_V36_ROOT = "@aave-dao/aave-v3-origin/src/contracts/"
_V36_REMAPPINGS = (
    "openzeppelin-contracts/contracts/=@openzeppelin/contracts/",
    "solidity-utils/contracts/=@bgd-labs/solidity-utils/src/contracts/",
)


def _v30_artifacts() -> dict[str, Artifact]:
    root = node_modules() / "@aave" / "core-v3" / "artifacts" / "contracts"
    index: dict[str, Path] = {}
    for path in root.rglob("*.json"):
        if not path.name.endswith(".dbg.json"):
            index.setdefault(path.stem, path)
    wanted = {**_V30_NAMES, **{lib: lib for lib in (*_POOL_LIBS["3.0"], "ConfiguratorLogic")}}
    out = {}
    for role, name in wanted.items():
        data = json.loads(index[name].read_text())
        out[role] = Artifact(data["abi"], data["bytecode"], data.get("linkReferences") or {})
    return out


def _v36_artifacts() -> dict[str, Artifact]:
    modules = node_modules()
    wanted = {**_V36_SOURCES}
    for lib in (*_POOL_LIBS["3.6"], "ConfiguratorLogic"):
        wanted[lib] = (f"protocol/libraries/logic/{lib}.sol", lib)
    outputs = ["abi", "evm.bytecode.object", "evm.bytecode.linkReferences"]
    input_json = {
        "language": "Solidity",
        "sources": {
            _V36_ROOT + src: {"content": (modules / (_V36_ROOT + src)).read_text()} for src, _ in wanted.values()
        },
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": "shanghai",
            "outputSelection": {_V36_ROOT + src: {name: outputs} for src, name in wanted.values()},
        },
    }
    output = compile_standard_json(input_json, remappings=_V36_REMAPPINGS)
    out = {}
    for role, (src, name) in wanted.items():
        entry = contract_output(output, _V36_ROOT + src, name)
        bytecode = entry["evm"]["bytecode"]
        out[role] = Artifact(entry["abi"], "0x" + bytecode["object"], bytecode.get("linkReferences") or {})
    return out


@functools.cache
def aave_artifacts(version: str) -> dict[str, Artifact]:
    """Return the contracts of an Aave version by role (pool, configurator, ..., library names)."""
    if version == "3.0":
        return _v30_artifacts()
    if version == "3.6":
        return _v36_artifacts()
    raise DevchainError(f"unknown Aave version {version!r}; expected one of {VERSIONS}")
