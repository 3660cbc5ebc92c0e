"""Deployment planning: one sender's transactions with precomputed CREATE addresses, sent as one batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from web3 import Web3

from watcher.devchain.aave.artifacts import Artifact
from watcher.devchain.aave.specs import GAS_ADMIN, GAS_DEPLOY
from watcher.devchain.deploy import Calldata, Tx, create_address, link_bytecode, send_txs
from watcher.devchain.node import DevchainError


class _Plan:
    """Collects one sender's transactions with precomputed CREATE addresses, so a stage is one batch."""

    def __init__(self, w3: Web3, sender: str, errors_abi: list[dict[str, Any]]) -> None:
        self.w3 = w3
        self.sender = sender
        self.errors_abi = errors_abi
        self.nonce = w3.eth.get_transaction_count(sender, "pending")  # type: ignore[arg-type]
        self.txs: list[Tx] = []

    def deploy(self, art: Artifact, args: Sequence[Any] = (), libs: dict[str, str] | None = None) -> str:
        bytecode = link_bytecode(art.bytecode, art.link_references, libs or {}) if art.link_references else art.bytecode
        data = self.w3.eth.contract(abi=art.abi, bytecode=bytecode).constructor(*args).data_in_transaction
        address = create_address(self.sender, self.nonce)
        self._add(Tx(self.sender, None, data, GAS_DEPLOY, f"deploy {address}"))
        return address

    def call(self, to: str, encoder: Calldata, fn: str, *args: Any, gas: int = GAS_ADMIN) -> None:
        self._add(Tx(self.sender, to, encoder.encode(fn, *args), gas, f"{fn}{args!r}"[:200]))

    def _add(self, tx: Tx) -> None:
        self.txs.append(tx)
        self.nonce += 1

    def send(self) -> None:
        txs, self.txs = self.txs, []
        if not txs:
            return
        first = self.nonce - len(txs)
        pending = self.w3.eth.get_transaction_count(self.sender, "pending")  # type: ignore[arg-type]
        if pending != first:
            # The precomputed CREATE addresses would be wrong: someone else sent from this account meanwhile.
            raise DevchainError(f"{self.sender} nonce moved from {first} to {pending} while planning a deployment")
        send_txs(self.w3, txs, errors_abi=self.errors_abi)


def _errors_abi(arts: dict[str, Artifact]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for art in arts.values():
        for item in art.abi:
            if item.get("type") == "error":
                seen.setdefault(item["name"], item)
    return list(seen.values())
