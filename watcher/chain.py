"""Chain access: one client per chain, reads pinned to a block and batched through one aggregate3 call."""

from __future__ import annotations

import asyncio
import operator
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from web3 import Web3
from web3.providers import HTTPProvider

from watcher.abi import (
    MULTICALL3,
    decode_aggregate,
    decode_aggregate3,
    encode_aggregate,
    encode_aggregate3,
    encoded_size,
    word,
)
from watcher.adapters.base import Call
from watcher.io.rpc import (
    DEFAULT_MAX_RESPONSE_BYTES,
    AnswerTooLarge,
    ChainError,
    HttpTransport,
    RateLimited,
    RpcError,
    Transport,
    Web3Transport,
)

#: Multicall3's address, the same on every chain it is deployed on.
MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"
#: Gas per batched eth_call: geth's and erigon's default eth_call cap (--rpc.gascap) is 50M.
DEFAULT_GAS_BUDGET = 50_000_000
#: Words in a node's refusal that mean "this batch is too big", as opposed to a dead or lying node.
# Not "rate limit" nor timeouts: splitting would only multiply the requests and the waits.
_CAPACITY = re.compile(r"gas|too large|exceed|size|payload|invalid request", re.IGNORECASE)
#: A node's word for "a call in the batch reverted".
_REVERT = re.compile(r"revert", re.IGNORECASE)
#: how nodes word a log query over too many blocks or with too many results
_LOG_RANGE = re.compile(
    r"range|too many|limit|exceed|10000|response size|timeout|query returned|max_response_bytes", re.IGNORECASE
)
#: Request size per eth_call, in characters: anvil refuses bodies over 2 MiB, geth over 5 MB.
DEFAULT_MAX_REQUEST_BYTES = 2_000_000


def redact_url(url: str) -> str:
    """An RPC URL fit for logs and errors: scheme and host only, since paths and queries often hold API keys."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    tail = "/..." if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{tail}"


#: Seconds a second endpoint's head may lag the first answer before the check goes on without it.
HEAD_GRACE = 0.5
#: Seconds a rate-limited endpoint rests when it gives no Retry-After.
RATE_LIMIT_COOLDOWN = 10.0
#: Seconds before asking again when an answer is for another block than the one asked.
MISMATCH_RETRY = 0.2
#: The longest rest a Retry-After can ask for: a node asking a day must not blind the chain for a day.
RATE_LIMIT_MAX_REST = 300.0


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """The block a check reads at."""

    number: int
    hash: str
    timestamp: int


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


def transport_for(w3: Web3) -> Transport:
    """The transport for a Web3 instance: HTTP for a node URL, in process otherwise."""
    if isinstance(w3.provider, HTTPProvider) and w3.provider.endpoint_uri:
        return HttpTransport(str(w3.provider.endpoint_uri))
    return Web3Transport(w3)


@dataclass
class _Endpoint:
    """One RPC URL and what the client knows of it."""

    label: str  #: `chains.<name>.rpc_urls[i] (scheme://host)`: never the path or query, which may hold a key
    transport: Transport
    resting_until: float = 0.0  #: monotonic time a rate-limited endpoint may be used again
    verified_at: float = float("-inf")  #: monotonic time its chain id was last confirmed
    failing: bool = False  #: its last request failed: its chain id is asked again before its answers count
    wrong_chain: int | None = None  #: the other chain id it reported: left out of reads until it reports ours


class ChainClient:
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

    def problems(self) -> list[str]:
        """What is wrong with the endpoints even when the chain still reads: URLs serving another chain."""
        return [
            f"{ep.label} reports chain id {ep.wrong_chain}, not chains.{self.name}.chain_id {self.chain_id}: "
            "left out of reads"
            for ep in self.endpoints
            if ep.wrong_chain is not None
        ]

    def _usable(self, i: int) -> bool:
        return self.endpoints[i].wrong_chain is None

    def _rest(self, ep: _Endpoint, exc: RateLimited, now: float) -> None:
        rest = exc.retry_after if exc.retry_after is not None else RATE_LIMIT_COOLDOWN
        ep.resting_until = now + min(rest, RATE_LIMIT_MAX_REST)

    async def _each(
        self,
        method: str,
        params: list[Any],
        only: Sequence[int] | None = None,
        extra: Sequence[tuple[str, list[Any]]] = (),
    ) -> Any:
        """Call on the active endpoint, falling over to the next on a failure.

        An endpoint that rate-limits us rests for its Retry-After (or RATE_LIMIT_COOLDOWN seconds); one that
        lags the others' head is left out of reads until it catches up; one on another chain is never asked.
        """
        errors = []
        now = time.monotonic()
        n = len(self.endpoints)
        order = [(self._active + k) % n for k in range(n) if self._usable((self._active + k) % n)]
        usable = [i for i in order if (only is None or i in only) and self.endpoints[i].resting_until <= now]
        for i in usable or order:  # when every endpoint rests, trying beats giving up
            ep = self.endpoints[i]
            try:
                # `extra` requests ride in the same HTTP request: then the answer is the list of all results
                if extra:
                    out = await ep.transport.request_many([(method, params), *extra])
                else:
                    out = await ep.transport.request(method, params)
            except RateLimited as exc:
                self._rest(ep, exc, now)
                errors.append(f"{ep.label}: {exc}")
                continue
            except RpcError as exc:  # the node answered: it is alive, the call itself failed
                errors.append(f"{ep.label}: {exc}")
                continue
            except ChainError as exc:
                ep.failing = True
                errors.append(f"{ep.label}: {exc}")
                continue
            except Exception as exc:  # transport errors of every kind: the next URL may serve
                ep.failing = True
                errors.append(f"{ep.label}: {type(exc).__name__}")
                continue
            self._active = i
            return out
        if not order:
            raise ChainError(
                f"chain {self.name}: no RPC URL serves chain id {self.chain_id}: " + "; ".join(self.problems())
            )
        raise ChainError(f"chain {self.name}: every RPC failed: " + "; ".join(errors))

    def _verify_due(self, ep: _Endpoint, now: float) -> bool:
        return ep.failing or ep.wrong_chain is not None or now - ep.verified_at >= self.verify_every

    async def _head(self, i: int, now: float) -> BlockHeader:
        """One endpoint's head; its chain id asked in the same HTTP request when it is due (or was failing)."""
        ep = self.endpoints[i]
        latest = ("eth_getBlockByNumber", ["latest", False])
        if self._verify_due(ep, now):
            got_id, raw = await ep.transport.request_many([("eth_chainId", []), latest])
            try:
                got = int(got_id, 16)
            except (TypeError, ValueError):
                raise ChainError("eth_chainId answered malformed") from None
            ep.verified_at, ep.failing = now, False
            if got != self.chain_id:
                ep.wrong_chain = got
                raise ChainError(f"reports chain id {got}, not {self.chain_id}")
            ep.wrong_chain = None
        else:
            raw = await ep.transport.request(*latest)
        try:
            return BlockHeader(int(raw["number"], 16), str(raw["hash"]), int(raw["timestamp"], 16))
        except (KeyError, TypeError, ValueError):
            raise ChainError("malformed block") from None

    async def latest_header(self) -> BlockHeader:
        """The newest block among the endpoints; endpoints lagging it by more than max_lag_blocks sit out.

        Two endpoints are asked at once (two answers are enough to spot a laggard without paying a request per
        endpoint); the next ones only when one of those failed. Once one has answered, a slow second one gets
        HEAD_GRACE seconds, not its whole deadline: a stalled fallback must not slow every check of the chain.
        """
        heads: dict[int, BlockHeader] = {}
        errors: list[str] = []
        now = time.monotonic()
        # A URL last seen on another chain, or due for its chain-id check, goes first: only this question clears the
        # one, and a third URL that is never asked would never be found on another chain.
        order = sorted(
            range(len(self.endpoints)),
            key=lambda i: (
                self.endpoints[i].wrong_chain is None and now - self.endpoints[i].verified_at < self.verify_every
            ),
        )
        queue = [
            i for i in order if self.endpoints[i].resting_until <= now or self.endpoints[i].wrong_chain is not None
        ]
        if not queue:
            # Every URL rests after a rate limit: asking the one whose rest ends first beats reading nothing.
            queue = [min(order, key=lambda i: self.endpoints[i].resting_until)]
            errors.append("every RPC is resting after a rate limit")
        want = min(2, len(self.endpoints))

        async def ask(i: int) -> None:
            ep = self.endpoints[i]
            try:
                heads[i] = await self._head(i, now)
            except RateLimited as exc:
                self._rest(ep, exc, now)
                errors.append(f"{ep.label}: {exc}")
            except ChainError as exc:
                if ep.wrong_chain is None:
                    ep.failing = True
                errors.append(f"{ep.label}: {exc}")
            except Exception as exc:
                ep.failing = True
                errors.append(f"{ep.label}: {type(exc).__name__}")

        pending: dict[asyncio.Task[None], int] = {}
        try:
            while (queue or pending) and len(heads) < want:
                while queue and len(pending) + len(heads) < want:
                    i = queue.pop(0)
                    pending[asyncio.ensure_future(ask(i))] = i
                done, _ = await asyncio.wait(
                    pending, timeout=HEAD_GRACE if heads else None, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:  # one head is in, the other is slow: go on with the one
                    break
                for task in done:
                    del pending[task]
            if heads and self._too_old(max(heads.values(), key=lambda h: h.number)):
                # The quick answer is a stuck head: before calling the chain stale, every other URL gets its whole
                # deadline (a healthy but slower provider must not lose to a fast stuck node).
                for i in queue:
                    pending[asyncio.ensure_future(ask(i))] = i
                queue = []
                while pending and self._too_old(max(heads.values(), key=lambda h: h.number)):
                    done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        del pending[task]
        finally:
            for task, i in pending.items():
                task.cancel()
                self.endpoints[i].failing = True  # too slow this time: its chain id is asked again next time
        if not heads:
            raise ChainError(f"chain {self.name}: every RPC failed: " + "; ".join(errors))
        best = max(heads.values(), key=lambda h: h.number)
        self._fresh = [i for i, h in heads.items() if best.number - h.number <= self.max_lag_blocks]
        if self._active not in self._fresh:
            self._active = self._fresh[0]
        return best

    def _too_old(self, head: BlockHeader) -> bool:
        return self.max_block_age is not None and time.time() - head.timestamp > self.max_block_age

    async def verify(self) -> list[str]:
        """Check each RPC's chain id at start-up; returns warnings for unreachable fallbacks.

        A URL answering with another chain id is refused outright, and so is a chain none of whose URLs
        answers; the errors name the offending key and URL (never its path, which may hold a key).
        """
        warnings, reachable = [], 0
        now = time.monotonic()
        answers = await asyncio.gather(
            *(ep.transport.request("eth_chainId", []) for ep in self.endpoints), return_exceptions=True
        )
        for ep, got_raw in zip(self.endpoints, answers, strict=True):
            if isinstance(got_raw, BaseException):
                reason = str(got_raw) if isinstance(got_raw, ChainError) else type(got_raw).__name__
                warnings.append(f"{ep.label} is unreachable ({reason})")
                ep.failing = True
                continue
            try:
                got = int(got_raw, 16)
            except (TypeError, ValueError):
                warnings.append(f"{ep.label} answered eth_chainId malformed")
                ep.failing = True
                continue
            if got != self.chain_id:
                raise ChainError(
                    f"{ep.label} reports chain id {got}, but chains.{self.name}.chain_id is {self.chain_id}"
                )
            ep.verified_at = now
            reachable += 1
        if not reachable:
            raise ChainError("; ".join(warnings))
        return warnings

    async def latest_block(self) -> int:
        """The latest block number."""
        return int(await self._each("eth_blockNumber", []), 16)

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


__all__ = [
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
]
