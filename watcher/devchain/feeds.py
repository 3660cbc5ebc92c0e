"""Our Chainlink-style feed stand-ins, for local chains: a feed keeping its round history
(devchain/sol/RoundFeedStandIn.sol), and a proxy fronting several of them as the phases of one feed
(devchain/sol/FeedProxyStandIn.sol)."""

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

_SOL = Path(__file__).with_name("sol")
_PUSH_BATCH = 200  #: rounds per push transaction: two fresh storage words each, well under a block's gas


@functools.cache
def _artifact(name: str) -> tuple[list[dict[str, Any]], str]:
    """Compile sol/{name}.sol with solc-js and return (abi, creation bytecode hex)."""
    source = f"{name}.sol"
    input_json = {
        "language": "Solidity",
        "sources": {source: {"content": (_SOL / source).read_text()}},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": "shanghai",
            "outputSelection": {source: {name: ["abi", "evm.bytecode.object"]}},
        },
    }
    entry = contract_output(compile_standard_json(input_json), source, name)
    return entry["abi"], "0x" + entry["evm"]["bytecode"]["object"]


def round_feed_artifact() -> tuple[list[dict[str, Any]], str]:
    """RoundFeedStandIn's (abi, creation bytecode hex)."""
    return _artifact("RoundFeedStandIn")


def deploy_feed_proxy(w3: Web3, phases: Sequence[Contract]) -> Contract:
    """Deploy a FeedProxyStandIn whose phases 1, 2, ... are the given round feeds (the last one current)."""
    abi, bytecode = _artifact("FeedProxyStandIn")
    admin = to_checksum_address(w3.eth.accounts[0])
    proxy = deploy_bytecode(w3, abi, bytecode, [], admin, label="deploy FeedProxyStandIn")
    txs = [
        Tx(admin, proxy.address, proxy.encode_abi("confirmAggregator", args=[f.address]), 200_000, "confirm phase")
        for f in phases
    ]
    send_txs(w3, txs, errors_abi=proxy.abi)
    return proxy


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
