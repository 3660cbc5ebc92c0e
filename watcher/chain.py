"""Chain access: one client per chain, reads pinned to a block and batched through one aggregate3 call."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from web3 import Web3
from web3.providers import HTTPProvider

from watcher.abi import MULTICALL3, decode_aggregate3, encode_aggregate3, word
from watcher.adapters.base import Call

#: Multicall3's address, the same on every chain it is deployed on.
MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"


class ChainError(Exception):
    """A chain could not be read: unreachable RPC, wrong chain id, or an answer that makes no sense."""


def redact_url(url: str) -> str:
    """An RPC URL fit for logs and errors: scheme and host only, since paths and queries often hold API keys."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    tail = "/..." if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{tail}"


@dataclass
class ReadStats:
    """What one read cost."""

    eth_calls: int = 0
    calls: int = 0
    rounds: int = 0
    seconds: float = 0.0
    chunk_sizes: list[int] = field(default_factory=list)


class ChainClient:
    """Reads one chain through its RPC URLs, in order, each checked for the right chain id."""

    def __init__(
        self,
        name: str,
        chain_id: int,
        endpoints: Sequence[tuple[str, Web3]],
        multicall: str = MULTICALL3_ADDRESS,
        gas_budget: int = 25_000_000,
    ) -> None:
        self.name = name
        self.chain_id = chain_id
        self.endpoints = list(endpoints)  # (label safe to print, web3)
        self.multicall = Web3.to_checksum_address(multicall)
        self.gas_budget = gas_budget
        self._active = 0

    @classmethod
    def from_urls(
        cls,
        name: str,
        chain_id: int,
        urls: Sequence[str],
        multicall: str,
        gas_budget: int,
        timeout: float = 10.0,
    ) -> ChainClient:
        """Clients over HTTP JSON-RPC URLs."""
        eps = [
            (
                f"chains.{name}.rpc_urls[{i}] ({redact_url(u)})",
                Web3(HTTPProvider(u, request_kwargs={"timeout": timeout})),
            )
            for i, u in enumerate(urls)
        ]
        return cls(name, chain_id, eps, multicall, gas_budget)

    def _request(self, w3: Web3, method: str, params: list[Any]) -> Any:
        if isinstance(w3.provider, HTTPProvider):
            # The raw request skips web3's formatters, which cost more than the EVM on megabyte batches.
            resp = w3.provider.make_request(method, params)  # type: ignore[arg-type]
            if "error" in resp:
                raise ChainError(f"{method} failed: {resp['error']}")
            return resp["result"]
        if method == "eth_chainId":
            return hex(w3.eth.chain_id)
        if method == "eth_blockNumber":
            return hex(w3.eth.block_number)
        if method == "eth_call":
            tx, block = params
            return "0x" + bytes(w3.eth.call(tx, block_identifier=int(block, 16))).hex()
        raise ChainError(f"unsupported method {method}")

    def _each(self, method: str, params: list[Any]) -> Any:
        """Call on the active endpoint, falling over to the next on a transport failure."""
        errors = []
        for k in range(len(self.endpoints)):
            i = (self._active + k) % len(self.endpoints)
            label, w3 = self.endpoints[i]
            try:
                out = self._request(w3, method, params)
            except ChainError as exc:
                errors.append(f"{label}: {exc}")
                continue
            except Exception as exc:  # transport errors of every kind: the next URL may serve
                errors.append(f"{label}: {type(exc).__name__}: {exc}")
                continue
            self._active = i
            return out
        raise ChainError(f"chain {self.name}: every RPC failed: " + "; ".join(errors))

    def verify(self) -> None:
        """Check that each RPC answers, with this chain's id; the error names the offending URL."""
        for label, w3 in self.endpoints:
            try:
                got = int(self._request(w3, "eth_chainId", []), 16)
            except Exception as exc:
                raise ChainError(f"{label} is unreachable ({type(exc).__name__})") from None
            if got != self.chain_id:
                raise ChainError(f"{label} reports chain id {got}, but chains.{self.name}.chain_id is {self.chain_id}")

    def latest_block(self) -> int:
        """The latest block number."""
        return int(self._each("eth_blockNumber", []), 16)

    def chunks(self, calls: Sequence[Call]) -> list[list[Call]]:
        """Split calls into batches whose estimated gas fits the budget."""
        out: list[list[Call]] = [[]]
        used = 0
        for c in calls:
            if out[-1] and used + c.gas > self.gas_budget:
                out.append([])
                used = 0
            out[-1].append(c)
            used += c.gas
        return out

    def read(
        self, calls: Sequence[Call], block: int, stats: ReadStats | None = None
    ) -> tuple[int, list[tuple[bool, bytes]]]:
        """Run all calls at `block`; returns the block timestamp and each call's (success, data)."""
        stats = stats if stats is not None else ReadStats()
        t0 = time.perf_counter()
        ts_call = Call(self.multicall, MULTICALL3.getCurrentBlockTimestamp.encode(), 5_000)
        results: list[tuple[bool, bytes]] = []
        timestamp = 0
        for k, chunk in enumerate(self.chunks(calls)):
            batch = [ts_call, *chunk] if k == 0 else chunk
            data = encode_aggregate3([(c.target, c.data) for c in batch])
            raw = self._each("eth_call", [{"to": self.multicall, "data": "0x" + data.hex()}, hex(block)])
            if raw in ("0x", ""):
                raise ChainError(
                    f"chain {self.name}: no aggregate3 contract answers at {self.multicall}; "
                    f"set chains.{self.name}.multicall"
                )
            try:
                answers = decode_aggregate3(bytes.fromhex(raw[2:]))
            except ValueError as exc:
                raise ChainError(f"chain {self.name}: {exc}") from None
            if len(answers) != len(batch):
                raise ChainError(f"chain {self.name}: asked {len(batch)} calls, got {len(answers)} answers")
            if k == 0:
                ok, ts = answers[0]
                if not ok:
                    raise ChainError(f"chain {self.name}: the aggregator at {self.multicall} does not answer")
                timestamp = word(ts)
                answers = answers[1:]
            results.extend(answers)
            stats.eth_calls += 1
            stats.chunk_sizes.append(len(batch))
        stats.calls += len(calls)
        stats.seconds += time.perf_counter() - t0
        return timestamp, results

    def raw_call(self, to: str, data: bytes, block: int) -> bytes:
        """One plain eth_call (used by baselines and tests, not by checks)."""
        raw = self._each("eth_call", [{"to": to, "data": "0x" + data.hex()}, hex(block)])
        return bytes.fromhex(raw[2:])
