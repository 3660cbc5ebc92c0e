"""ENS STAND-IN contracts on a local chain (our EnsStandIn.sol): a registry and a resolver, both with open setters."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.contract import Contract

from watcher.devchain.deploy import Calldata, Tx, deploy_bytecode, send_txs
from watcher.devchain.solc import compile_standard_json, contract_output
from watcher.ens import namehash

_SOL = Path(__file__).resolve().parent / "sol"
CONTRACTS = ("EnsRegistryStandIn", "EnsResolverStandIn")
ZERO = "0x" + "00" * 20


@functools.cache
def ens_stand_in_artifacts() -> dict[str, tuple[list[dict[str, Any]], str]]:
    """Compile EnsStandIn.sol with solc-js; {contract name: (abi, creation bytecode hex)}."""
    source = "EnsStandIn.sol"
    output = compile_standard_json(
        {
            "language": "Solidity",
            "sources": {source: {"content": (_SOL / source).read_text()}},
            "settings": {
                "optimizer": {"enabled": True, "runs": 200},
                "evmVersion": "shanghai",
                "outputSelection": {source: {c: ["abi", "evm.bytecode.object"] for c in CONTRACTS}},
            },
        }
    )
    out = {}
    for name in CONTRACTS:
        entry = contract_output(output, source, name)
        out[name] = (entry["abi"], "0x" + entry["evm"]["bytecode"]["object"])
    return out


@dataclass
class EnsStandIn:
    """A deployed registry and resolver, with helpers that point a name at an address or at nothing."""

    w3: Web3
    admin: str
    registry: Contract
    resolver: Contract

    def _send(self, contract: Contract, fn: str, *args: Any) -> None:
        data = Calldata(contract.abi).encode(fn, *args)
        send_txs(self.w3, [Tx(self.admin, contract.address, data, 200_000, fn)], errors_abi=contract.abi)

    def set_name(self, name: str, address: str) -> None:
        """Give `name` our resolver, answering `address` for it."""
        node = namehash(name)
        self._send(self.registry, "setResolver", node, self.resolver.address)
        self._send(self.resolver, "setAddr", node, address)

    def clear_addr(self, name: str) -> None:
        """The resolver answers the zero address for `name` (its record removed)."""
        self._send(self.resolver, "setAddr", namehash(name), ZERO)

    def clear_resolver(self, name: str) -> None:
        """The registry has no resolver for `name` (the name expired or was released)."""
        self._send(self.registry, "setResolver", namehash(name), ZERO)


def deploy_ens_stand_in(w3: Web3, admin: str | None = None) -> EnsStandIn:
    """Deploy the registry and the resolver stand-ins."""
    admin = admin or w3.eth.accounts[0]
    arts = ens_stand_in_artifacts()
    contracts = [deploy_bytecode(w3, *arts[n], [], admin, gas=2_000_000, label=f"deploy {n}") for n in CONTRACTS]
    return EnsStandIn(w3, admin, *contracts)


__all__ = ["EnsStandIn", "deploy_ens_stand_in", "ens_stand_in_artifacts"]
