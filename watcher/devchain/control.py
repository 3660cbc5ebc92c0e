"""Controls either local chain (eth-tester in process, anvil over HTTP): snapshots, time, mining, JSON-RPC batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from web3 import EthereumTesterProvider, Web3

from watcher.devchain.anvil import rpc
from watcher.devchain.node import DevchainError

# eth-tester's py-evm genesis defaults to a 30M block gas limit; batched reads need room like anvil's.
ETH_TESTER_GAS_LIMIT = 1_000_000_000
# Each JSON-RPC batch is one HTTP request; a few hundred keeps the bodies small and anvil responsive.
_RPC_BATCH = 500


def is_eth_tester(w3: Web3) -> bool:
    """Return True when w3 runs on eth-tester (in-process py-evm) rather than a JSON-RPC node."""
    return isinstance(w3.provider, EthereumTesterProvider)


def eth_tester_web3(gas_limit: int = ETH_TESTER_GAS_LIMIT) -> Web3:
    """Return a Web3 on a fresh eth-tester py-evm chain whose block gas limit is gas_limit."""
    from eth_tester import EthereumTester, PyEVMBackend

    params = PyEVMBackend.generate_genesis_params(overrides={"gas_limit": gas_limit})
    return Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend(genesis_parameters=params))))


def batch_rpc(w3: Web3, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
    """Run many JSON-RPC calls as HTTP batches on a JSON-RPC node; raise on any error."""
    if is_eth_tester(w3):
        raise DevchainError("batch_rpc needs a JSON-RPC node; eth-tester has no raw batch interface")
    results: list[Any] = []
    for start in range(0, len(calls), _RPC_BATCH):
        chunk = list(calls[start : start + _RPC_BATCH])
        responses = w3.provider.make_batch_request(chunk)  # type: ignore[attr-defined,arg-type]
        if not isinstance(responses, list):
            raise DevchainError(f"batch JSON-RPC failed: {responses}")
        for (method, _params), resp in zip(chunk, responses, strict=True):
            if "error" in resp:
                raise DevchainError(f"{method} failed: {resp['error']}")
            results.append(resp["result"])
    return results


def take_snapshot(w3: Web3) -> Any:
    """Snapshot the chain state (eth-tester or anvil) and return an id for revert_snapshot()."""
    if is_eth_tester(w3):
        return w3.provider.ethereum_tester.take_snapshot()  # type: ignore[attr-defined]
    return rpc(w3, "evm_snapshot")


def revert_snapshot(w3: Web3, snapshot_id: Any) -> None:
    """Return the chain to a snapshot from take_snapshot(); on anvil the id is used up."""
    if is_eth_tester(w3):
        w3.provider.ethereum_tester.revert_to_snapshot(snapshot_id)  # type: ignore[attr-defined]
    elif not rpc(w3, "evm_revert", [snapshot_id]):
        raise DevchainError(f"evm_revert({snapshot_id}) was refused")


def advance_time(w3: Web3, seconds: int) -> int:
    """Move chain time forward by seconds, mine one block, and return the new block's timestamp."""
    if is_eth_tester(w3):
        latest = w3.eth.get_block("latest")["timestamp"]
        # time_travel(t) mines a block stamped t - 1 and leaves the pending block at t.
        w3.provider.ethereum_tester.time_travel(latest + int(seconds) + 1)  # type: ignore[attr-defined]
    else:
        rpc(w3, "evm_increaseTime", [int(seconds)])
        rpc(w3, "evm_mine")
    return int(w3.eth.get_block("latest")["timestamp"])


def mine(w3: Web3, blocks: int = 1) -> None:
    """Mine empty blocks."""
    if is_eth_tester(w3):
        w3.provider.ethereum_tester.mine_blocks(blocks)  # type: ignore[attr-defined]
    else:
        for _ in range(blocks):
            rpc(w3, "evm_mine")


@contextmanager
def manual_mining(w3: Web3) -> Iterator[None]:
    """On anvil, turn automine off for the block, restoring the previous mode after; no-op on eth-tester."""
    if is_eth_tester(w3):
        yield
        return
    was_auto = bool(rpc(w3, "anvil_getAutomine"))
    if was_auto:
        rpc(w3, "evm_setAutomine", [False])
    try:
        yield
    finally:
        if was_auto:
            rpc(w3, "evm_setAutomine", [True])
