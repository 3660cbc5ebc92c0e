"""Sends and deploys on either local chain, singly or in bulk (the chain controls of control.py are re-exported)."""

from __future__ import annotations

import ast
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import rlp
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_abi_to_4byte_selector, get_abi_input_types, keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from watcher.devchain.anvil import rpc
from watcher.devchain.control import (
    ETH_TESTER_GAS_LIMIT,
    advance_time,
    batch_rpc,
    eth_tester_web3,
    is_eth_tester,
    manual_mining,
    mine,
    revert_snapshot,
    take_snapshot,
)
from watcher.devchain.node import DevchainError

__all__ = [
    "DEPLOY_GAS",
    "ETH_TESTER_GAS_LIMIT",
    "Calldata",
    "Tx",
    "TxResult",
    "advance_time",
    "batch_rpc",
    "create_address",
    "decode_revert",
    "deploy_batch_reader",
    "deploy_bytecode",
    "eth_tester_web3",
    "gas_price",
    "is_eth_tester",
    "link_bytecode",
    "manual_mining",
    "mine",
    "revert_reason",
    "revert_snapshot",
    "send_txs",
    "take_snapshot",
]

DEPLOY_GAS = 12_000_000
_RECEIPT_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Tx:
    """One transaction to send: sender, target (None to deploy), calldata, gas; label names it in errors."""

    sender: str
    to: str | None
    data: str
    gas: int
    label: str = ""
    value: int = 0


# What send_txs returns per tx: {"transactionHash": str, "status": int (1 ok, 0 reverted),
# "blockNumber": int, "contractAddress": str | None}. Full receipts are not fetched (see _send_json_rpc).
TxResult = dict[str, Any]


def _result(tx_hash: str, status: int, block: int, created: str | None) -> TxResult:
    return {"transactionHash": tx_hash, "status": status, "blockNumber": block, "contractAddress": created}


class Calldata:
    """Encodes calls for one ABI fast: selectors and argument types are looked up once per function."""

    def __init__(self, abi: Sequence[dict[str, Any]]) -> None:
        """Index the ABI's functions by (name, argument count)."""
        self._fns: dict[tuple[str, int], tuple[bytes, list[str]]] = {}
        for item in abi:
            if item.get("type") == "function":
                types = list(get_abi_input_types(item))  # type: ignore[arg-type]
                key = (item["name"], len(types))
                self._fns[key] = (function_abi_to_4byte_selector(item), types)  # type: ignore[arg-type]

    def encode(self, fn: str, *args: Any) -> str:
        """Return 0x-hex calldata for fn(*args); overloads are told apart by argument count."""
        try:
            selector, types = self._fns[(fn, len(args))]
        except KeyError as exc:
            raise DevchainError(f"no function {fn} taking {len(args)} arguments in the ABI") from exc
        return "0x" + (selector + abi_encode(types, list(args))).hex()


def _pending_nonces(w3: Web3, senders: Sequence[str]) -> dict[str, int]:
    if is_eth_tester(w3):
        tester = w3.provider.ethereum_tester  # type: ignore[attr-defined]
        return {s: int(tester.get_nonce(s)) for s in senders}
    calls = [("eth_getTransactionCount", [s, "pending"]) for s in senders]
    return {s: int(n, 16) for s, n in zip(senders, batch_rpc(w3, calls), strict=True)}


def gas_price(w3: Web3) -> int:
    """Return a legacy gas price safely above the base fee, so explicit-fee sends are never underpriced."""
    # From the block's base fee, not eth_gasPrice: anvil's eth_gasPrice follows recent transactions' prices, so
    # paying 2x of it doubled the price with every send until the admin ran dry. The base fee only falls on these
    # chains (blocks stay far below the 50% target), so 2x stays valid.
    base = w3.eth.get_block("latest").get("baseFeePerGas") or 0
    return 2 * int(base) + 10**9


def _tx_dict(tx: Tx, nonce: int, price: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "from": tx.sender,
        "data": tx.data,
        "gas": hex(tx.gas),
        "gasPrice": hex(price),
        "nonce": hex(nonce),
        "value": hex(tx.value),
    }
    if tx.to is not None:
        out["to"] = tx.to
    return out


def decode_revert(data: str | bytes | None, errors_abi: Sequence[dict[str, Any]] = ()) -> str:
    """Turn revert data into text: Error(string), Panic(uint256), or a custom error named from errors_abi."""
    raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else data or b""
    if not raw:
        return "no revert data"
    selector, body = raw[:4], raw[4:]
    try:
        if selector == bytes.fromhex("08c379a0"):
            return f"Error({abi_decode(['string'], body)[0]!r})"
        if selector == bytes.fromhex("4e487b71"):
            return f"Panic({abi_decode(['uint256'], body)[0]:#x})"
    except Exception:
        pass
    for item in errors_abi:
        if item.get("type") == "error" and function_abi_to_4byte_selector(item) == selector:  # type: ignore[arg-type]
            return f"{item['name']}(0x{body.hex()})"
    return "0x" + raw.hex()


def revert_reason(w3: Web3, tx: Tx, block: int | str, errors_abi: Sequence[dict[str, Any]] = ()) -> str:
    """Replay tx as an eth_call on block's state and return why it reverts ('' if it does not)."""
    call: dict[str, Any] = {"from": tx.sender, "data": tx.data, "gas": tx.gas, "value": tx.value}
    if tx.to is not None:
        call["to"] = tx.to
    try:
        w3.eth.call(call, block)  # type: ignore[arg-type]
    except ContractLogicError as exc:
        return decode_revert(exc.data, errors_abi) if exc.data else str(exc)
    except Exception as exc:
        return str(exc)
    return ""


def _mined_revert_reason(w3: Web3, tx: Tx, result: TxResult, errors_abi: Sequence[dict[str, Any]]) -> str:
    if is_eth_tester(w3):
        # eth-tester mines one tx per block, so the parent block's state is exactly what the tx saw; its
        # call API hands back the raw revert data, which web3's wrapper turns into an opaque message.
        from eth_tester.exceptions import TransactionFailed

        call: dict[str, Any] = {"from": tx.sender, "data": tx.data, "gas": tx.gas, "value": tx.value}
        if tx.to is not None:
            call["to"] = tx.to
        try:
            w3.provider.ethereum_tester.call(call, result["blockNumber"] - 1)  # type: ignore[attr-defined]
        except TransactionFailed as exc:
            detail = exc.args[0] if exc.args else b""
            if isinstance(detail, str) and detail[:2] in ("b'", 'b"'):
                # py-evm reports a custom error as the repr of its revert bytes.
                detail = ast.literal_eval(detail)
            return decode_revert(detail, errors_abi) if isinstance(detail, bytes) else str(detail)
        except Exception as exc:
            return str(exc)
        return "no revert on replay"
    # anvil packs many txs into a block; only a trace of the mined tx shows its real revert data.
    try:
        trace = rpc(w3, "debug_traceTransaction", [result["transactionHash"], {"tracer": "callTracer"}])
    except DevchainError as exc:
        return f"(no trace: {exc})"
    return decode_revert(trace.get("output"), errors_abi)


def send_txs(
    w3: Web3,
    txs: Sequence[Tx],
    *,
    errors_abi: Sequence[dict[str, Any]] = (),
    check: bool = True,
) -> list[TxResult]:
    """Send txs with explicit nonces, gas and price, without waiting per tx; return their results in order.

    Each result is a dict: transactionHash, status (int), blockNumber (int), contractAddress (deploys).

    Senders must be unlocked on the node (eth-tester keyring, anvil dev or impersonated accounts). On
    anvil, automine is off while sending so that a burst shares few blocks, then blocks are mined until the
    pool is empty. With check, a reverted tx raises DevchainError naming its label and revert reason.
    """
    if not txs:
        return []
    senders = list(dict.fromkeys(tx.sender for tx in txs))
    nonces = _pending_nonces(w3, senders)
    price = gas_price(w3)
    tx_nonces = []
    for tx in txs:
        tx_nonces.append(nonces[tx.sender])
        nonces[tx.sender] += 1
    if is_eth_tester(w3):
        results = _send_eth_tester(w3, txs, tx_nonces, price)
    else:
        results = _send_json_rpc(w3, txs, tx_nonces, price)
    if check:
        for tx, result in zip(txs, results, strict=True):
            if result["status"] != 1:
                reason = _mined_revert_reason(w3, tx, result, errors_abi)
                raise DevchainError(
                    f"transaction {tx.label or result['transactionHash']} ({result['transactionHash']}) reverted "
                    f"in block {result['blockNumber']}: {reason}"
                )
    return results


def _send_eth_tester(w3: Web3, txs: Sequence[Tx], nonces: Sequence[int], price: int) -> list[TxResult]:
    # The tester API directly: web3's request formatting costs more than py-evm runs an ERC-20 call.
    # eth-tester mines each transaction as it arrives, so every receipt exists as soon as the send returns.
    tester = w3.provider.ethereum_tester  # type: ignore[attr-defined]
    results = []
    for tx, nonce in zip(txs, nonces, strict=True):
        d: dict[str, Any] = {
            "from": tx.sender,
            "data": tx.data,
            "gas": tx.gas,
            "gas_price": price,
            "nonce": nonce,
            "value": tx.value,
        }
        if tx.to is not None:
            d["to"] = tx.to
        r = tester.get_transaction_receipt(tester.send_transaction(d))
        created = r["contract_address"]
        results.append(
            _result(
                r["transaction_hash"],
                int(r["status"]),
                int(r["block_number"]),
                to_checksum_address(created) if created else None,
            )
        )
    return results


def _pool_empty(w3: Web3) -> bool:
    status = rpc(w3, "txpool_status")
    return int(status["pending"], 16) == 0 and int(status["queued"], 16) == 0


def _send_json_rpc(w3: Web3, txs: Sequence[Tx], nonces: Sequence[int], price: int) -> list[TxResult]:
    first_block = int(rpc(w3, "eth_blockNumber"), 16) + 1
    dicts = [_tx_dict(tx, n, price) for tx, n in zip(txs, nonces, strict=True)]
    # With automine on, big JSON-RPC batches of sends stall anvil (minutes for a few thousand txs) and it
    # sometimes leaves the last tx of a burst pending. With automine off, a pool of thousands of txs makes
    # each insert slower, and anvil drops the txs that do not fit the mined block (and the sender's later
    # ones). So: automine off, and per block only as many txs as their declared gas lets fit, then evm_mine.
    block_gas = int(w3.eth.get_block("latest")["gasLimit"])
    hashes: list[str] = []
    with manual_mining(w3):
        start = 0
        while start < len(dicts):
            end, used = start, 0
            while end < len(dicts) and (end == start or used + txs[end].gas <= block_gas):
                used += txs[end].gas
                end += 1
            sent = batch_rpc(w3, [("eth_sendTransaction", [d]) for d in dicts[start:end]])
            hashes += [h.lower() for h in sent]
            rpc(w3, "evm_mine")
            start = end
        deadline = time.monotonic() + _RECEIPT_TIMEOUT_S
        while not _pool_empty(w3):
            if time.monotonic() > deadline:
                raise DevchainError(f"transaction pool not empty after {_RECEIPT_TIMEOUT_S}s")
            rpc(w3, "evm_mine")
    last_block = int(rpc(w3, "eth_blockNumber"), 16)
    # Receipts cost anvil time proportional to their block's size (quadratic for thousand-tx blocks), so a
    # tx that emitted a log is taken as succeeded from one eth_getLogs; only the rest get receipts.
    logged: dict[str, int] = {}
    if last_block >= first_block:
        for log in rpc(w3, "eth_getLogs", [{"fromBlock": hex(first_block), "toBlock": hex(last_block)}]):
            logged.setdefault(log["transactionHash"].lower(), int(log["blockNumber"], 16))
    silent = [h for h in hashes if h not in logged]
    receipts = dict(zip(silent, batch_rpc(w3, [("eth_getTransactionReceipt", [h]) for h in silent]), strict=True))
    results = []
    for tx, nonce, h in zip(txs, nonces, hashes, strict=True):
        if h in logged:
            status, block = 1, logged[h]
        else:
            receipt = receipts[h]
            if receipt is None:
                raise DevchainError(f"transaction {tx.label or h} ({h}) was sent but dropped by the node")
            status, block = int(receipt["status"], 16), int(receipt["blockNumber"], 16)
        created = create_address(tx.sender, nonce) if tx.to is None and status == 1 else None
        results.append(_result(h, status, block, created))
    return results


def create_address(sender: str, nonce: int) -> str:
    """Return the address a CREATE from sender at nonce deploys to."""
    raw = keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:]
    return to_checksum_address(raw)


def link_bytecode(
    bytecode: str, link_references: dict[str, dict[str, list[dict[str, int]]]], libs: dict[str, str]
) -> str:
    """Fill library placeholders in bytecode from solc/Hardhat linkReferences; libs maps library name to address."""
    code = bytecode[2:] if bytecode.startswith("0x") else bytecode
    chars = list(code)
    for _source, by_name in link_references.items():
        for name, refs in by_name.items():
            if name not in libs:
                raise DevchainError(f"library {name} has no address to link")
            addr = libs[name].lower().removeprefix("0x")
            for ref in refs:
                start = ref["start"] * 2
                chars[start : start + ref["length"] * 2] = addr
    linked = "".join(chars)
    if "__" in linked:
        raise DevchainError("bytecode still has unlinked library placeholders")
    return "0x" + linked


def deploy_bytecode(
    w3: Web3,
    abi: Sequence[dict[str, Any]],
    bytecode: str,
    args: Sequence[Any],
    sender: str,
    *,
    gas: int = DEPLOY_GAS,
    label: str = "",
) -> Contract:
    """Deploy a contract from sender and return its web3 contract object."""
    factory = w3.eth.contract(abi=abi, bytecode=bytecode)
    data = factory.constructor(*args).data_in_transaction
    [result] = send_txs(w3, [Tx(sender, None, data, gas, label or "deploy")], errors_abi=abi)
    return w3.eth.contract(address=result["contractAddress"], abi=abi)


def deploy_batch_reader(w3: Web3, sender: str | None = None) -> str:
    """Deploy watcher/devchain/sol/BatchReader.sol (Multicall3's aggregate3 ABI) and return its address."""
    from watcher.devchain.solc import batch_reader_artifact

    abi, bytecode = batch_reader_artifact()
    return deploy_bytecode(w3, abi, bytecode, [], sender or w3.eth.accounts[0], gas=2_000_000).address
