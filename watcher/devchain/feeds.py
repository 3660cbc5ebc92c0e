"""Our Chainlink-style feed stand-in with a round history (devchain/sol/RoundFeedStandIn.sol), for local chains."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract

from watcher.devchain.deploy import Tx, deploy_bytecode, send_txs
from watcher.devchain.solc import compile_standard_json, contract_output

_SOURCE = Path(__file__).with_name("sol") / "RoundFeedStandIn.sol"
_PUSH_BATCH = 200  #: rounds per push transaction: two fresh storage words each, well under a block's gas


@functools.cache
def round_feed_artifact() -> tuple[list[dict[str, Any]], str]:
    """Compile RoundFeedStandIn.sol with solc-js and return (abi, creation bytecode hex)."""
    source = "RoundFeedStandIn.sol"
    input_json = {
        "language": "Solidity",
        "sources": {source: {"content": _SOURCE.read_text()}},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": "shanghai",
            "outputSelection": {source: {"RoundFeedStandIn": ["abi", "evm.bytecode.object"]}},
        },
    }
    entry = contract_output(compile_standard_json(input_json), source, "RoundFeedStandIn")
    return entry["abi"], "0x" + entry["evm"]["bytecode"]["object"]


def deploy_round_feed(
    w3: Web3, rounds: Sequence[tuple[int, int]], decimals: int = 8, description: str = "stand-in / USD"
) -> Contract:
    """Deploy a feed holding `rounds` ((updatedAt, answer), oldest first) and return it."""
    abi, bytecode = round_feed_artifact()
    admin = to_checksum_address(w3.eth.accounts[0])
    feed = deploy_bytecode(w3, abi, bytecode, [decimals, description], admin, label="deploy RoundFeedStandIn")
    push_rounds(w3, feed, rounds)
    return feed


def push_rounds(w3: Web3, feed: Contract, rounds: Sequence[tuple[int, int]]) -> None:
    """Append rounds to a deployed stand-in feed, in as few transactions as fit."""
    admin = to_checksum_address(w3.eth.accounts[0])
    txs = []
    for i in range(0, len(rounds), _PUSH_BATCH):
        chunk = rounds[i : i + _PUSH_BATCH]
        data = feed.encode_abi("push", args=[[a for _, a in chunk], [t for t, _ in chunk]])
        txs.append(Tx(admin, feed.address, data, 12_000_000, "push rounds"))
    send_txs(w3, txs, errors_abi=feed.abi)
