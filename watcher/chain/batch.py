"""Batched reads: calls packed into aggregate / aggregate3 eth_calls that fit the budgets, split when a node refuses."""

from __future__ import annotations

import asyncio
import operator
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from watcher.abi import decode_aggregate, decode_aggregate3, encode_aggregate, encode_aggregate3, encoded_size, word
from watcher.adapters.base import Call
from watcher.chain.endpoints import Endpoints
from watcher.io.rpc import ChainError

#: Multicall3's address, the same on every chain it is deployed on.
MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"
#: Gas per batched eth_call: geth's and erigon's default eth_call cap (--rpc.gascap) is 50M.
DEFAULT_GAS_BUDGET = 50_000_000
#: Words in a node's refusal that mean "this batch is too big", as opposed to a dead or lying node.
# Not "rate limit" nor timeouts: splitting would only multiply the requests and the waits.
_CAPACITY = re.compile(r"gas|too large|exceed|size|payload|invalid request", re.IGNORECASE)
#: A node's word for "a call in the batch reverted".
_REVERT = re.compile(r"revert", re.IGNORECASE)
#: Request size per eth_call, in characters: anvil refuses bodies over 2 MiB, geth over 5 MB.
DEFAULT_MAX_REQUEST_BYTES = 2_000_000
#: Seconds before asking again when an answer is for another block than the one asked.
MISMATCH_RETRY = 0.2


@dataclass
class ReadStats:
    """What one read cost."""

    eth_calls: int = 0
    calls: int = 0
    rounds: int = 0
    seconds: float = 0.0
    chunk_sizes: list[int] = field(default_factory=list)
    splits: int = 0  #: batches the node refused and that were retried in halves
    storage_reads: int = 0  #: eth_getStorageAt reads, sent in the same HTTP request as an eth_call


def _aggregate_block(raw: bytes) -> int | None:
    """The block number an aggregate answer says it ran at (its first word), or None if it is too short to say."""
    return int.from_bytes(raw[:32], "big") if len(raw) >= 32 else None


class Batching(Endpoints):
    """The batched read of ChainClient: every call of a check at one block, in as few eth_calls as fit."""

    # set by ChainClient.__init__; declared here so each part names the state it uses
    multicall: str
    gas_budget: int
    max_request_bytes: int
    _fresh: list[int] | None
    _encoded: dict[int, tuple[list[Call], str]]
    _last_batches: tuple[list[Call], list[list[Call]]] | None
    _ts_call: Call

    def chunks(self, calls: Sequence[Call]) -> list[list[Call]]:
        """Split calls into batches whose estimated gas and request size fit the budgets."""
        out: list[list[Call]] = [[]]
        gas = size = 0
        for c in calls:
            c_size = 2 * encoded_size(c.data)  # hex doubles the bytes on the wire
            if out[-1] and (gas + c.gas > self.gas_budget or size + c_size > self.max_request_bytes):
                out.append([])
                gas = size = 0
            out[-1].append(c)
            gas += c.gas
            size += c_size
        return out

    async def _eth_call(self, data: bytes | str, block: int, storage: Sequence[Call] = ()) -> tuple[bytes, list[bytes]]:
        """One eth_call to the aggregator, with any storage reads in the same HTTP request."""
        hexdata = data if isinstance(data, str) else "0x" + data.hex()
        extra = [("eth_getStorageAt", [c.target, hex(c.slot or 0), hex(block)]) for c in storage]
        raw = await self._each("eth_call", [{"to": self.multicall, "data": hexdata}, hex(block)], self._fresh, extra)
        slots: list[bytes] = []
        if extra:
            raw, *values = raw
            for c, v in zip(storage, values, strict=True):
                if not isinstance(v, str) or not v.startswith("0x") or len(v) > 66:
                    raise ChainError(f"chain {self.name}: eth_getStorageAt({c.target}, {c.slot}) answered malformed")
                try:
                    slots.append(bytes.fromhex(v[2:].rjust(64, "0")))
                except ValueError:
                    raise ChainError(f"chain {self.name}: eth_getStorageAt answered malformed hex") from None
        if not isinstance(raw, str) or not raw.startswith("0x"):
            raise ChainError(f"chain {self.name}: eth_call answered {str(raw)[:40]!r}, not hex data")
        if raw == "0x":
            raise ChainError(
                f"chain {self.name}: no aggregate contract answers at {self.multicall}; "
                f"set chains.{self.name}.multicall"
            )
        try:
            return bytes.fromhex(raw[2:]), slots
        except ValueError:
            raise ChainError(f"chain {self.name}: eth_call answered malformed hex") from None

    def _batches(self, calls: Sequence[Call]) -> list[list[Call]]:
        """The batches for these calls, the block-timestamp read first; reused while the calls are the same."""
        last = self._last_batches
        if last is not None and len(last[0]) == len(calls) and all(map(operator.is_, last[0], calls)):
            return last[1]
        batches = [[self._ts_call, *chunk] if k == 0 else chunk for k, chunk in enumerate(self.chunks(calls))]
        self._last_batches = (list(calls), batches)
        return batches

    def _encode(self, slot: int, batch: list[Call]) -> str:
        cached = self._encoded.get(slot)
        if cached is not None and len(cached[0]) == len(batch) and all(map(operator.is_, cached[0], batch)):
            return cached[1]
        hexdata = "0x" + encode_aggregate([(c.target, c.data) for c in batch]).hex()
        self._encoded[slot] = (batch, hexdata)
        return hexdata

    async def _batch(
        self, slot: int, batch: list[Call], block: int, stats: ReadStats, storage: Sequence[Call] = ()
    ) -> tuple[list[tuple[bool, bytes]], list[bytes]]:
        """One eth_call: aggregate (compact, all must succeed); if a call reverts, aggregate3 tells which."""
        try:
            raw, slots = await self._eth_call(self._encode(slot, batch), block, storage)
            if _aggregate_block(raw) not in (None, block):
                # A node that has only just announced the block can answer one call from the block it is building
                # (anvil does, right after newHeads); asked again a moment later it answers for the block asked.
                await asyncio.sleep(MISMATCH_RETRY)
                raw, slots = await self._eth_call(self._encode(slot, batch), block, storage)
        except ChainError as exc:
            if _CAPACITY.search(str(exc)) or not _REVERT.search(str(exc)):
                raise
            stats.eth_calls += 1
            raw3, slots = await self._eth_call(encode_aggregate3([(c.target, c.data) for c in batch]), block, storage)
            try:
                answers = decode_aggregate3(raw3)
            except ValueError as err:
                raise ChainError(f"chain {self.name}: {err}") from None
        else:
            try:
                number, datas = decode_aggregate(raw)
            except ValueError as err:
                raise ChainError(f"chain {self.name}: {err}") from None
            if number != block:
                raise ChainError(f"chain {self.name}: asked for block {block}, the node answered for {number}")
            answers = [(True, d) for d in datas]
        if len(answers) != len(batch):
            raise ChainError(f"chain {self.name}: asked {len(batch)} calls, got {len(answers)} answers")
        return answers, slots

    async def read(
        self, calls: Sequence[Call], block: int, stats: ReadStats | None = None
    ) -> tuple[int, list[tuple[bool, bytes]]]:
        """Run all calls at `block`; returns the block timestamp and each call's (success, data).

        Calls go in as few eth_calls as the gas and size budgets allow. A batch the node refuses as too big
        (its caps may be below the budgets, or the estimates low) is split in two and retried. Storage reads
        (`Call.slot`) ride in the first eth_call's HTTP request as a JSON-RPC batch, so they cost no round trip.
        """
        stats = stats if stats is not None else ReadStats()
        t0 = time.perf_counter()
        storage = [c for c in calls if c.slot is not None]
        plain = [c for c in calls if c.slot is None] if storage else calls
        results: list[tuple[bool, bytes]] = []
        stored: list[bytes] = []
        queue = [list(b) for b in self._batches(plain)]
        slot = 0
        while queue:
            batch = queue.pop(0)
            slot += 1
            try:
                answers, got = await self._batch(slot, batch, block, stats, storage if not stored else ())
            except ChainError as exc:
                if len(batch) <= 2 or not _CAPACITY.search(str(exc)):
                    raise
                half = len(batch) // 2
                queue[:0] = [batch[:half], batch[half:]]
                stats.splits += 1
                continue
            stored += got
            results.extend(answers)
            stats.eth_calls += 1
            stats.chunk_sizes.append(len(batch))
        ok, ts = results.pop(0)
        if not ok or len(ts) != 32:
            raise ChainError(f"chain {self.name}: the aggregator at {self.multicall} does not answer")
        if storage:
            stats.storage_reads += len(storage)
            plain_it, stored_it = iter(results), iter(stored)
            results = [(True, next(stored_it)) if c.slot is not None else next(plain_it) for c in calls]
        stats.calls += len(calls)
        stats.seconds += time.perf_counter() - t0
        return word(ts), results
