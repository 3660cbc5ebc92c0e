"""One check: for each chain, every deployment's reads in one aggregate call at one pinned block."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from watcher.adapters.aave_v3 import AaveV3Reader
from watcher.adapters.base import Account, Reader, ReadError
from watcher.adapters.morpho_blue import MorphoBlueReader
from watcher.chain import ChainClient, ChainError, ReadStats
from watcher.config import Config, Deployment, resolve_deployments
from watcher.model import BlockRef, Position

MAX_ROUNDS = 6


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
        if dep.adapter == "aave_v3":
            readers.append(AaveV3Reader(dep.name, dep.chain, dep.address, accounts))
        elif dep.adapter == "morpho_blue":
            readers.append(MorphoBlueReader(dep.name, dep.chain, dep.address, dep.markets, accounts))
    return readers


def build(cfg: Config) -> list[Reader]:
    """Readers for a validated config."""
    return build_readers(cfg, resolve_deployments(cfg))


def _accounts(reader: Reader) -> tuple[Account, ...]:
    return tuple(getattr(reader, "accounts", ()))


def check_chain(client: ChainClient, readers: Sequence[Reader], result: CheckResult, now: float | None = None) -> None:
    """Read every reader on one chain at its latest block; failures mark positions unknown."""
    stats = result.stats.setdefault(client.name, ReadStats())
    try:
        head = client.latest_header()
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
    pending = list(readers)
    for _ in range(MAX_ROUNDS):
        if not pending:
            break
        plans = [r.calls() for r in pending]
        flat = [c for plan in plans for c in plan]
        try:
            timestamp, answers = client.read(flat, number, stats)
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


def run_check(clients: dict[str, ChainClient], readers: Sequence[Reader]) -> CheckResult:
    """Check every chain; each chain's reads are one batched call (more only while learning new state)."""
    t0 = time.perf_counter()
    result = CheckResult()
    with _gc_paused():
        for name, client in clients.items():
            mine = [r for r in readers if r.chain == name]
            if mine:
                check_chain(client, mine, result)
    result.seconds = time.perf_counter() - t0
    return result
