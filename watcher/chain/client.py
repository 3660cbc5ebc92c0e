"""ChainClient: one client per chain, built from config; its heads, failover and batched reads come from its bases."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from web3 import Web3

from watcher.abi import MULTICALL3
from watcher.adapters.base import Call
from watcher.chain.batch import DEFAULT_GAS_BUDGET, DEFAULT_MAX_REQUEST_BYTES, MULTICALL3_ADDRESS, Batching
from watcher.chain.endpoints import _Endpoint, redact_url, transport_for
from watcher.chain.heads import Heads
from watcher.io.rpc import DEFAULT_MAX_RESPONSE_BYTES, ChainError, HttpTransport, Transport

#: how nodes word a log query over too many blocks or with too many results
_LOG_RANGE = re.compile(
    r"range|too many|limit|exceed|10000|response size|timeout|query returned|max_response_bytes", re.IGNORECASE
)


class ChainClient(Batching, Heads):
    """Reads one chain through its RPC URLs, in order, each checked for the right chain id (again and again)."""

    def __init__(
        self,
        name: str,
        chain_id: int,
        endpoints: Sequence[tuple[str, Web3 | Transport]],
        multicall: str = MULTICALL3_ADDRESS,
        gas_budget: int = DEFAULT_GAS_BUDGET,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_lag_blocks: int = 3,
        max_block_age: float | None = None,
        verify_every: float = 300.0,
    ) -> None:
        self.name = name
        self.chain_id = chain_id
        self.endpoints = [_Endpoint(label, transport_for(t) if isinstance(t, Web3) else t) for label, t in endpoints]
        self.multicall = Web3.to_checksum_address(multicall)
        self.gas_budget = gas_budget
        self.max_request_bytes = max_request_bytes
        self._active = 0
        self._fresh: list[int] | None = None  # endpoints at the head, from the last latest_header()
        self.max_lag_blocks = max_lag_blocks
        self.max_block_age = max_block_age  # seconds; None: never call a head stale (local chains)
        self.verify_every = verify_every
        # Consecutive checks usually send the very same batches: keep their encoding.
        self._encoded: dict[int, tuple[list[Call], str]] = {}
        self._last_batches: tuple[list[Call], list[list[Call]]] | None = None
        self._ts_call = Call(self.multicall, MULTICALL3.getCurrentBlockTimestamp.encode(), 5_000)

    @classmethod
    def from_urls(
        cls,
        name: str,
        chain_id: int,
        urls: Sequence[str],
        multicall: str = MULTICALL3_ADDRESS,
        gas_budget: int = DEFAULT_GAS_BUDGET,
        timeout: float = 10.0,
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        **settings: Any,
    ) -> ChainClient:
        """A client over HTTP JSON-RPC URLs."""
        eps: list[tuple[str, Web3 | Transport]] = [
            (f"chains.{name}.rpc_urls[{i}] ({redact_url(u)})", HttpTransport(u, timeout, max_response_bytes))
            for i, u in enumerate(urls)
        ]
        return cls(name, chain_id, eps, multicall, gas_budget, **settings)

    @classmethod
    def from_config(cls, name: str, chain: Any) -> ChainClient:
        """The one way the watcher builds a chain's client: every key of `chains.<name>` reaches it here."""
        return cls.from_urls(
            name,
            chain.chain_id,
            chain.urls(name),
            chain.multicall,
            chain.call_gas_budget,
            chain.timeout,
            max_response_bytes=chain.max_response_bytes,
            max_lag_blocks=chain.max_lag_blocks,
            max_block_age=chain.max_block_age,
            verify_every=chain.verify_every,
        )

    async def close(self) -> None:
        """Close every endpoint's connections."""
        for ep in self.endpoints:
            await ep.transport.close()

    async def get_logs(self, address: str, topics: list[Any], from_block: int, to_block: int) -> list[dict[str, Any]]:
        """eth_getLogs over a block range; a range the node refuses as too large is split in halves."""
        out: list[dict[str, Any]] = []
        queue = [(from_block, to_block)]
        while queue:
            lo, hi = queue.pop(0)
            params = {"address": address, "topics": topics, "fromBlock": hex(lo), "toBlock": hex(hi)}
            try:
                logs = await self._each("eth_getLogs", [params], self._fresh)
            except ChainError as exc:
                if hi <= lo or not _LOG_RANGE.search(str(exc)):
                    raise
                mid = (lo + hi) // 2
                queue[:0] = [(lo, mid), (mid + 1, hi)]
                continue
            if not isinstance(logs, list) or not all(isinstance(x, dict) for x in logs):
                raise ChainError(f"chain {self.name}: eth_getLogs answered malformed logs")
            out += logs
        return out

    async def raw_call(self, to: str, data: bytes, block: int) -> bytes:
        """One plain eth_call (used by baselines and tests, not by checks)."""
        raw = await self._each("eth_call", [{"to": to, "data": "0x" + data.hex()}, hex(block)])
        return bytes.fromhex(raw[2:])
