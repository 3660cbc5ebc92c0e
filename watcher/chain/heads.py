"""A chain's head: the newest block among its endpoints, laggards left out, chain ids confirmed again and again."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from watcher.chain.endpoints import Endpoints, _Endpoint
from watcher.io.rpc import ChainError, RateLimited

#: Seconds a second endpoint's head may lag the first answer before the check goes on without it.
HEAD_GRACE = 0.5


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """The block a check reads at."""

    number: int
    hash: str
    timestamp: int


class Heads(Endpoints):
    """Head reads and chain-id checks of ChainClient."""

    # set by ChainClient.__init__; declared here so each part names the state it uses
    _fresh: list[int] | None
    max_lag_blocks: int
    max_block_age: float | None
    verify_every: float

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
