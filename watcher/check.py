"""One check: for each chain, every deployment's reads in one aggregate call at one pinned block."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from watcher.adapters.base import Account, LogReader, Reader, ReadError, VenueReader
from watcher.chain import ChainClient, ChainError, ReadStats, redact_url
from watcher.config import Config, ConfigError, Deployment, resolve_deployments, resolve_venues
from watcher.model import BlockRef, Position

MAX_ROUNDS = 12  #: first checks learn markets, vaults and feeds round by round (a Maker owner walks 2 vaults a round)


async def read_logs(reader: Reader, client: ChainClient, head: int) -> None:
    """Run a log-reading reader's eth_getLogs queries through `client` and hand it the answers; others: nothing."""
    if not isinstance(reader, LogReader):
        return
    queries = reader.log_queries(head)
    if not queries:
        return
    logs = [await client.get_logs(q.address, _topics(q.topics), q.from_block, q.to_block) for q in queries]
    reader.take_logs(head, logs)


def _topics(topics: tuple[Any, ...]) -> list[Any]:
    # eth_getLogs wants JSON lists where a LogQuery, being hashable, holds tuples
    return [list(t) if isinstance(t, tuple) else t for t in topics]


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A deployment whose positions could not be read this check: they are unknown, never healthy."""

    protocol: str
    chain: str
    accounts: tuple[Account, ...]
    reason: str


@dataclass
class CheckResult:
    """What a check found."""

    positions: list[Position] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    stats: dict[str, ReadStats] = field(default_factory=dict)
    blocks: dict[str, BlockRef] = field(default_factory=dict)
    degraded: dict[str, str] = field(default_factory=dict)  #: chain -> why it could not be read at all
    seconds: float = 0.0

    def merge(self, other: CheckResult) -> None:
        """Add another check's findings (e.g. the off-chain venues' beside the chains')."""
        self.positions += other.positions
        self.unreadable += other.unreadable
        self.stats |= other.stats
        self.blocks |= other.blocks
        self.degraded |= other.degraded
        self.seconds += other.seconds


def make_reader(dep: Deployment, accounts: list[Account]) -> Reader:
    """The reader for one resolved deployment, made by the protocol that registered its adapter."""
    from watcher.registry import chain_protocols

    try:
        return chain_protocols()[dep.adapter].make_reader(dep, accounts)
    except ValueError as exc:  # e.g. a custom deployment without the contracts its adapter needs
        raise ConfigError(f"deployment {dep.name} on {dep.chain}: {exc} (give them under `contracts`)") from None


def build_readers(cfg: Config, deployments: Sequence[Deployment]) -> list[Reader]:
    """One reader per deployment, with the accounts that watch it."""
    readers: list[Reader] = []
    for dep in deployments:
        accounts = [
            Account(a.address, a.label or a.address[:10])
            for a in cfg.accounts
            if a.protocols is None or dep.name in a.protocols
        ]
        if not accounts:
            continue
        readers.append(make_reader(dep, accounts))
    return readers


def build(cfg: Config) -> list[Reader]:
    """Readers for a validated config."""
    return build_readers(cfg, resolve_deployments(cfg))


def build_venues(cfg: Config) -> list[VenueReader]:
    """One reader per off-chain venue under [venues]."""
    from watcher.registry import venue_protocols

    protocols = venue_protocols()
    out: list[VenueReader] = []
    for v in resolve_venues(cfg):
        accounts = [Account(a.address, a.label or a.address[:10]) for a in v.accounts]
        out.append(protocols[v.adapter].make_reader(v, accounts))
    return out


#: a URL in an error text (aiohttp names the URL it failed on), up to the next space or quote
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def _redacted(m: re.Match[str]) -> str:
    url = m.group(0)
    tail = url[len(url.rstrip(":,.;)")) :]  # punctuation after the URL is the message's, not the URL's
    return redact_url(url[: len(url) - len(tail)]) + tail


async def check_venue(reader: VenueReader, session: Any, result: CheckResult) -> None:
    """Read one venue; any failure marks its positions unknown and the venue degraded, never healthy."""
    t0 = time.perf_counter()
    try:
        positions = await reader.read(session)
    except ReadError as exc:
        reason = str(exc)
    except Exception as exc:  # a venue answer we did not foresee must not stop the daemon, nor read as healthy
        reason = f"{reader.protocol}/{reader.chain}: unexpected {type(exc).__name__}: {exc}"
    else:
        result.positions.extend(positions)
        for account, why in getattr(reader, "skipped", ()):
            result.unreadable.append(Unreadable(reader.protocol, reader.chain, (account,), why))
        result.seconds += time.perf_counter() - t0
        return
    reason = _URL.sub(_redacted, reason)  # a venue URL's path or query may hold a key
    result.unreadable.append(Unreadable(reader.protocol, reader.chain, tuple(reader.accounts), reason))
    result.degraded[reader.chain] = reason
    result.seconds += time.perf_counter() - t0


async def check_venues(readers: Sequence[VenueReader], session: Any | None = None) -> CheckResult:
    """Read every venue concurrently (one aiohttp session, made here when not given)."""
    import aiohttp

    result = CheckResult()
    if session is None:
        async with aiohttp.ClientSession() as own:
            await asyncio.gather(*(check_venue(r, own, result) for r in readers))
    else:
        await asyncio.gather(*(check_venue(r, session, result) for r in readers))
    return result


def run_venues(readers: Sequence[VenueReader]) -> CheckResult:
    """check_venues from synchronous code (`watcher check`)."""
    return asyncio.run(check_venues(readers))


def _accounts(reader: Reader) -> tuple[Account, ...]:
    return tuple(getattr(reader, "accounts", ()))


async def check_chain(
    client: ChainClient, readers: Sequence[Reader], result: CheckResult, now: float | None = None
) -> None:
    """Read every reader on one chain at its latest block; failures mark positions unknown."""
    stats = result.stats.setdefault(client.name, ReadStats())
    try:
        head = await client.latest_header()
    except ChainError as exc:
        result.unreadable.extend(Unreadable(r.protocol, r.chain, _accounts(r), str(exc)) for r in readers)
        result.degraded[client.name] = str(exc)
        return
    number = head.number
    age = (now if now is not None else time.time()) - head.timestamp
    if client.max_block_age is not None and age > client.max_block_age:
        # A node stuck on an old block answers happily, with stale prices: that is not "healthy".
        reason = f"chain {client.name}: the latest block {number} is {age:.0f} s old (max {client.max_block_age:.0f} s)"
        result.unreadable.extend(Unreadable(r.protocol, r.chain, _accounts(r), reason) for r in readers)
        result.degraded[client.name] = reason
        return
    pending = []
    for r in readers:
        try:
            await read_logs(r, client, number)  # e.g. markets an account entered since the last scan
        except Exception as exc:  # a bad log must not stop the other readers of the chain, nor read as healthy
            why = str(exc) if isinstance(exc, (ChainError, ReadError)) else f"unexpected {type(exc).__name__}: {exc}"
            reason = f"{r.protocol}/{r.chain}: market discovery failed: {why}"
            result.unreadable.append(Unreadable(r.protocol, r.chain, _accounts(r), reason))
            continue
        pending.append(r)
    for _ in range(MAX_ROUNDS):
        if not pending:
            break
        plans, planned = [], []
        for r in pending:
            try:
                plans.append(r.calls())
            except Exception as exc:  # an adapter bug in one reader must not stop the chain's other readers
                reason = f"{r.protocol}/{r.chain}: unexpected {type(exc).__name__}: {exc}"
                result.unreadable.append(Unreadable(r.protocol, r.chain, _accounts(r), reason))
                continue
            planned.append(r)
        pending = planned
        if not pending:
            break
        flat = [c for plan in plans for c in plan]
        try:
            timestamp, answers = await client.read(flat, number, stats)
        except ChainError as exc:
            result.unreadable.extend(Unreadable(r.protocol, r.chain, _accounts(r), str(exc)) for r in pending)
            result.degraded[client.name] = str(exc)
            return
        stats.rounds += 1
        block = BlockRef(number, timestamp, head.hash)
        result.blocks[client.name] = block
        still: list[Reader] = []
        offset = 0
        for reader, plan in zip(pending, plans, strict=True):
            part = answers[offset : offset + len(plan)]
            offset += len(plan)
            try:
                positions = reader.parse(part, block)
            except ReadError as exc:
                result.unreadable.append(Unreadable(reader.protocol, reader.chain, _accounts(reader), str(exc)))
                continue
            except Exception as exc:  # e.g. a ZeroDivisionError on a zero price: unknown, never a crashed check
                reason = f"{reader.protocol}/{reader.chain}: unexpected {type(exc).__name__}: {exc}"
                result.unreadable.append(Unreadable(reader.protocol, reader.chain, _accounts(reader), reason))
                continue
            if positions is None:
                still.append(reader)
                continue
            result.positions.extend(positions)
            for account, reason in getattr(reader, "skipped", ()):
                result.unreadable.append(Unreadable(reader.protocol, reader.chain, (account,), reason))
        pending = still
    for r in pending:
        reason = f"state kept changing over {MAX_ROUNDS} rounds at block {number}"
        result.unreadable.append(Unreadable(r.protocol, r.chain, _accounts(r), reason))
    problems = client.problems()
    if problems:
        # the chain still reads through its other URLs, but one serves another chain: the user must hear of it
        result.degraded.setdefault(client.name, "; ".join(problems))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: a check allocates tens of thousands of small acyclic objects, and
    collections triggered midway cost a fifth of its time; reference counting frees them all the same."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


async def check_chains(clients: dict[str, ChainClient], readers: Sequence[Reader]) -> CheckResult:
    """Check every chain at once; each chain's reads are one batched call (more only while learning new state)."""
    t0 = time.perf_counter()
    result = CheckResult()
    with _gc_paused():
        await asyncio.gather(
            *(
                check_chain(client, mine, result)
                for name, client in clients.items()
                if (mine := [r for r in readers if r.chain == name])
            )
        )
    result.seconds = time.perf_counter() - t0
    return result


def run_check(clients: dict[str, ChainClient], readers: Sequence[Reader]) -> CheckResult:
    """check_chains from synchronous code (the demo, benchmarks, tests): its own event loop, closed after."""

    async def once() -> CheckResult:
        try:
            return await check_chains(clients, readers)
        finally:
            for client in clients.values():
                await client.close()

    return asyncio.run(once())
