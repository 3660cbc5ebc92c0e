"""Chain access: one client per chain, reads pinned to a block and batched through one aggregate3 call."""

from __future__ import annotations

import json
import operator
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
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
_LOG_RANGE = re.compile(r"range|too many|limit|exceed|10000|response size|timeout|query returned", re.IGNORECASE)
#: Request size per eth_call, in characters: anvil refuses bodies over 2 MiB, geth over 5 MB.
DEFAULT_MAX_REQUEST_BYTES = 2_000_000


class ChainError(Exception):
    """A chain could not be read: unreachable RPC, wrong chain id, or an answer that makes no sense."""


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


#: Seconds a rate-limited endpoint rests when it gives no Retry-After.
RATE_LIMIT_COOLDOWN = 10.0


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


class RpcError(ChainError):
    """A JSON-RPC node answered with an error object."""


class RateLimited(ChainError):
    """The node asked us to slow down (HTTP 429 or a JSON-RPC rate-limit error)."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


#: JSON-RPC error codes and words providers use for "too many requests".
_RATE_LIMIT_CODES = {-32005, -32029, 429}
_RATE_LIMIT_WORDS = re.compile(r"rate.?limit|too many requests|exceeded .*(quota|capacity|requests)", re.IGNORECASE)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: rare from RPC providers; the default cooldown applies


class HttpTransport:
    """JSON-RPC over HTTP with a kept-alive session; no web3 formatters on the hot path."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Content-Type"] = "application/json"

    def _post(self, body: str) -> Any:
        resp = self.session.post(self.url, data=body, timeout=self.timeout)
        if resp.status_code == 429:
            after = _retry_after(resp.headers.get("Retry-After"))
            raise RateLimited(f"rate limited (HTTP 429, Retry-After {after if after is not None else '-'})", after)
        if resp.status_code != 200:
            raise ChainError(f"HTTP {resp.status_code}")
        try:
            return resp.json()
        except ValueError:
            raise ChainError("answer is not JSON") from None

    @staticmethod
    def _result(method: str, answer: Any) -> Any:
        if not isinstance(answer, dict):
            raise ChainError("answer is not a JSON-RPC object")
        if "error" in answer:
            err = answer["error"]
            msg = err.get("message", err) if isinstance(err, dict) else err
            code = err.get("code") if isinstance(err, dict) else None
            if code in _RATE_LIMIT_CODES or _RATE_LIMIT_WORDS.search(str(msg)):
                raise RateLimited(f"{method}: rate limited: {msg}", None)
            raise RpcError(f"{method}: {msg}")
        if "result" not in answer:
            raise ChainError("answer has no result")
        return answer["result"]

    def request(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; raises RpcError for an error answer, ChainError for a bad HTTP answer."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        return self._result(method, self._post(body))

    def request_many(self, requests: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one HTTP request (a JSON-RPC batch); answers in request order."""
        body = json.dumps([{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(requests)])
        answer = self._post(body)
        if isinstance(answer, dict):
            # a node that refuses batches (some public RPCs) answers with one error object: ask one by one rather
            # than leave every chain with a storage read unreadable behind it
            return [self.request(m, p) for m, p in requests]
        if not isinstance(answer, list) or len(answer) != len(requests):
            raise ChainError("a JSON-RPC batch answer has the wrong shape")
        by_id = {a.get("id"): a for a in answer if isinstance(a, dict)}
        if set(by_id) != set(range(len(requests))):
            raise ChainError("a JSON-RPC batch answer has missing or unknown ids")
        return [self._result(m, by_id[i]) for i, (m, _) in enumerate(requests)]


class Web3Transport:
    """An in-process chain (eth-tester) behind the same interface."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3

    def request(self, method: str, params: list[Any]) -> Any:
        """The few methods a check needs."""
        w3 = self.w3
        if method == "eth_chainId":
            return hex(w3.eth.chain_id)
        if method == "eth_blockNumber":
            return hex(w3.eth.block_number)
        if method == "eth_getBlockByNumber":
            b = w3.eth.get_block(params[0])
            return {"number": hex(b["number"]), "hash": "0x" + bytes(b["hash"]).hex(), "timestamp": hex(b["timestamp"])}
        if method == "eth_getLogs":
            raw = w3.eth.get_logs(params[0])
            return [
                {
                    "topics": ["0x" + bytes(t).hex() for t in log["topics"]],
                    "data": "0x" + bytes(log["data"]).hex(),
                    "blockNumber": hex(log["blockNumber"]),
                }
                for log in raw
            ]
        if method == "eth_getStorageAt":
            address, slot, block = params
            tester = getattr(w3.provider, "ethereum_tester", None)
            if tester is not None:  # web3 hands eth-tester a hex block number, which it refuses
                value = tester.get_storage_at(address, slot, int(block, 16))
            else:
                value = w3.eth.get_storage_at(address, int(slot, 16), block_identifier=int(block, 16))
            return (
                "0x" + bytes.fromhex(value[2:] if isinstance(value, str) else bytes(value).hex()).rjust(32, b"\0").hex()
            )
        if method == "eth_call":
            tx, block = params
            try:
                return "0x" + bytes(w3.eth.call(tx, block_identifier=int(block, 16))).hex()
            except Exception as exc:
                raise RpcError(f"eth_call: execution reverted: {exc}") from None
        raise ChainError(f"unsupported method {method}")

    def request_many(self, requests: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """The calls one after another (in process, there is no round trip to save)."""
        return [self.request(m, p) for m, p in requests]


Transport = HttpTransport | Web3Transport


def transport_for(w3: Web3) -> Transport:
    """The fastest transport for a Web3 instance."""
    if isinstance(w3.provider, HTTPProvider) and w3.provider.endpoint_uri:
        return HttpTransport(str(w3.provider.endpoint_uri))
    return Web3Transport(w3)


class ChainClient:
    """Reads one chain through its RPC URLs, in order, each checked for the right chain id."""

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
    ) -> None:
        self.name = name
        self.chain_id = chain_id
        self.endpoints: list[tuple[str, Transport]] = [
            (label, transport_for(t) if isinstance(t, Web3) else t) for label, t in endpoints
        ]
        self.multicall = Web3.to_checksum_address(multicall)
        self.gas_budget = gas_budget
        self.max_request_bytes = max_request_bytes
        self._active = 0
        self._resting: dict[int, float] = {}  # endpoint index -> monotonic time it may be used again
        self._fresh: list[int] | None = None  # endpoints at the head, from the last latest_header()
        self.max_lag_blocks = max_lag_blocks
        self.max_block_age = max_block_age  # seconds; None: never call a head stale (local chains)
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
        multicall: str,
        gas_budget: int,
        timeout: float = 10.0,
    ) -> ChainClient:
        """Clients over HTTP JSON-RPC URLs."""
        eps: list[tuple[str, Web3 | Transport]] = [
            (f"chains.{name}.rpc_urls[{i}] ({redact_url(u)})", HttpTransport(u, timeout)) for i, u in enumerate(urls)
        ]
        return cls(name, chain_id, eps, multicall, gas_budget)

    def _each(
        self,
        method: str,
        params: list[Any],
        only: Sequence[int] | None = None,
        extra: Sequence[tuple[str, list[Any]]] = (),
    ) -> Any:
        """Call on the active endpoint, falling over to the next on a failure.

        An endpoint that rate-limits us rests for its Retry-After (or RATE_LIMIT_COOLDOWN seconds); one that
        lags the others' head is left out of reads until it catches up.
        """
        errors = []
        now = time.monotonic()
        order = [(self._active + k) % len(self.endpoints) for k in range(len(self.endpoints))]
        usable = [i for i in order if (only is None or i in only) and self._resting.get(i, 0.0) <= now]
        for i in usable or order:  # when every endpoint rests, trying beats giving up
            label, transport = self.endpoints[i]
            try:
                # `extra` requests ride in the same HTTP request: then the answer is the list of all results
                out = transport.request_many([(method, params), *extra]) if extra else transport.request(method, params)
            except RateLimited as exc:
                self._resting[i] = now + (exc.retry_after if exc.retry_after is not None else RATE_LIMIT_COOLDOWN)
                errors.append(f"{label}: {exc}")
                continue
            except ChainError as exc:
                errors.append(f"{label}: {exc}")
                continue
            except Exception as exc:  # transport errors of every kind: the next URL may serve
                errors.append(f"{label}: {type(exc).__name__}")
                continue
            self._active = i
            return out
        raise ChainError(f"chain {self.name}: every RPC failed: " + "; ".join(errors))

    def latest_header(self) -> BlockHeader:
        """The newest block among the endpoints; endpoints lagging it by more than max_lag_blocks sit out."""
        heads: dict[int, BlockHeader] = {}
        errors = []
        now = time.monotonic()
        for i, (label, transport) in enumerate(self.endpoints):
            if self._resting.get(i, 0.0) > now:
                continue
            try:
                raw = transport.request("eth_getBlockByNumber", ["latest", False])
                heads[i] = BlockHeader(int(raw["number"], 16), str(raw["hash"]), int(raw["timestamp"], 16))
            except RateLimited as exc:
                self._resting[i] = now + (exc.retry_after if exc.retry_after is not None else RATE_LIMIT_COOLDOWN)
                errors.append(f"{label}: {exc}")
            except (ChainError, KeyError, TypeError, ValueError) as exc:
                errors.append(f"{label}: {exc}" if isinstance(exc, ChainError) else f"{label}: malformed block")
            except Exception as exc:
                errors.append(f"{label}: {type(exc).__name__}")
            if len(self.endpoints) == 1 or len(heads) >= 2:
                # Two answers are enough to spot a laggard without paying a request per endpoint.
                break
        if not heads:
            raise ChainError(f"chain {self.name}: every RPC failed: " + "; ".join(errors))
        best = max(heads.values(), key=lambda h: h.number)
        self._fresh = [i for i, h in heads.items() if best.number - h.number <= self.max_lag_blocks]
        if self._active not in self._fresh:
            self._active = self._fresh[0]
        return best

    def verify(self) -> list[str]:
        """Check each RPC's chain id; returns warnings for unreachable fallbacks.

        A URL answering with another chain id is refused outright, and so is a chain none of whose URLs
        answers; the errors name the offending key and URL (never its path, which may hold a key).
        """
        warnings, reachable = [], 0
        for label, transport in self.endpoints:
            try:
                got = int(transport.request("eth_chainId", []), 16)
            except Exception as exc:
                warnings.append(f"{label} is unreachable ({type(exc).__name__})")
                continue
            if got != self.chain_id:
                raise ChainError(f"{label} reports chain id {got}, but chains.{self.name}.chain_id is {self.chain_id}")
            reachable += 1
        if not reachable:
            raise ChainError("; ".join(warnings))
        return warnings

    def latest_block(self) -> int:
        """The latest block number."""
        return int(self._each("eth_blockNumber", []), 16)

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

    def _eth_call(self, data: bytes | str, block: int, storage: Sequence[Call] = ()) -> tuple[bytes, list[bytes]]:
        """One eth_call to the aggregator, with any storage reads in the same HTTP request."""
        hexdata = data if isinstance(data, str) else "0x" + data.hex()
        extra = [("eth_getStorageAt", [c.target, hex(c.slot or 0), hex(block)]) for c in storage]
        raw = self._each("eth_call", [{"to": self.multicall, "data": hexdata}, hex(block)], self._fresh, extra)
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

    def _batch(
        self, slot: int, batch: list[Call], block: int, stats: ReadStats, storage: Sequence[Call] = ()
    ) -> tuple[list[tuple[bool, bytes]], list[bytes]]:
        """One eth_call: aggregate (compact, all must succeed); if a call reverts, aggregate3 tells which."""
        try:
            raw, slots = self._eth_call(self._encode(slot, batch), block, storage)
        except ChainError as exc:
            if _CAPACITY.search(str(exc)) or not _REVERT.search(str(exc)):
                raise
            stats.eth_calls += 1
            raw3, slots = self._eth_call(encode_aggregate3([(c.target, c.data) for c in batch]), block, storage)
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

    def read(
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
                answers, got = self._batch(slot, batch, block, stats, storage if not stored else ())
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

    def get_logs(self, address: str, topics: list[Any], from_block: int, to_block: int) -> list[dict[str, Any]]:
        """eth_getLogs over a block range; a range the node refuses as too large is split in halves."""
        out: list[dict[str, Any]] = []
        queue = [(from_block, to_block)]
        while queue:
            lo, hi = queue.pop(0)
            params = {"address": address, "topics": topics, "fromBlock": hex(lo), "toBlock": hex(hi)}
            try:
                logs = self._each("eth_getLogs", [params], self._fresh)
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

    def raw_call(self, to: str, data: bytes, block: int) -> bytes:
        """One plain eth_call (used by baselines and tests, not by checks)."""
        raw = self._each("eth_call", [{"to": to, "data": "0x" + data.hex()}, hex(block)])
        return bytes.fromhex(raw[2:])
