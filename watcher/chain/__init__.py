"""Chain access: one client per chain, reads pinned to a block and batched through one aggregate3 call.

Modules: endpoints (URLs, labels, failover), heads (the newest block, chain-id checks), batch (the aggregate calls),
client (ChainClient, which puts them together). Everything other code imports is re-exported here.
"""

from __future__ import annotations

from watcher.chain.batch import (
    DEFAULT_GAS_BUDGET,
    DEFAULT_MAX_REQUEST_BYTES,
    MISMATCH_RETRY,
    MULTICALL3_ADDRESS,
    ReadStats,
)
from watcher.chain.client import ChainClient
from watcher.chain.endpoints import RATE_LIMIT_COOLDOWN, RATE_LIMIT_MAX_REST, redact_url, transport_for
from watcher.chain.heads import HEAD_GRACE, BlockHeader
from watcher.io.rpc import AnswerTooLarge, ChainError, HttpTransport, RateLimited, RpcError, Web3Transport

__all__ = [
    "DEFAULT_GAS_BUDGET",
    "DEFAULT_MAX_REQUEST_BYTES",
    "HEAD_GRACE",
    "MISMATCH_RETRY",
    "MULTICALL3_ADDRESS",
    "RATE_LIMIT_COOLDOWN",
    "RATE_LIMIT_MAX_REST",
    "AnswerTooLarge",
    "BlockHeader",
    "ChainClient",
    "ChainError",
    "HttpTransport",
    "RateLimited",
    "ReadStats",
    "RpcError",
    "Web3Transport",
    "redact_url",
    "transport_for",
]
