"""What an adapter gives the chain layer: calls to batch, and a parser for their answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from watcher.abi import words
from watcher.model import BlockRef, Position


@dataclass(frozen=True, slots=True)
class Call:
    """One read, to be batched with all others on the chain into one aggregate call."""

    target: str  #: contract address (0x-prefixed hex)
    data: bytes  #: ABI-encoded calldata
    gas: int = 30_000  #: a generous estimate, used to size batches under the node's eth_call gas cap
    #: a storage read instead of a call: the 32-byte word at this slot of `target` (data is ignored); for state no
    #: view function serves to us, such as an OSM's whitelisted next price
    slot: int | None = None


@dataclass(frozen=True, slots=True)
class LogQuery:
    """One eth_getLogs a reader needs before it plans its round; the check runs it through the chain client."""

    address: str  #: the contract whose events are asked for
    #: per position a topic, a list of alternatives, or None for any (eth_getLogs' own shape)
    topics: tuple[str | tuple[str, ...] | None, ...]
    from_block: int
    to_block: int


@dataclass(frozen=True, slots=True)
class Account:
    """An account to watch in a deployment."""

    address: str
    label: str


class ReadError(Exception):
    """The chain's answer cannot be trusted: a required call reverted or returned malformed data."""


#: the knowledge key of a reader that has not planned yet: equal to no key a reader can have
_UNPLANNED = object()


class TaggedReader:
    """Shared plan cache and answer handling for readers that tag each call.

    A subclass builds its round in `calls()`: `if self._replan(key):` then `_add` each call with its tag, and
    returns `self._calls`. `key` is whatever the reader has learned that changes the plan; while it is unchanged
    the very same list object comes back, so the chain layer (and tests counting calls) see one plan, not a new
    one each round. `parse` pairs answers with tags and hands them to the subclass's `_parse(got, block)`;
    malformed data of any kind becomes a ReadError naming the deployment, so it reads as unknown, never healthy.
    """

    protocol: str
    chain: str
    #: the gas of a call that names none; readers set their own cheap-read estimate
    _gas: int = 30_000
    #: one tag per call, in order, and the calls; empty (and immutable) until the first plan
    _plan: Sequence[tuple[Any, ...]] = ()
    _calls: Sequence[Call] = ()
    _planned_for: object = _UNPLANNED

    def _replan(self, key: object) -> bool:
        """Whether `key` asks for a new plan; if so the plan is emptied and `key` remembered."""
        if key == self._planned_for:
            return False
        self._new_plan(key)
        return True

    def _new_plan(self, key: object = _UNPLANNED) -> None:
        """Start an empty plan for `key` (by default one no later `_replan` matches, so it plans afresh)."""
        self._planned_for = key
        self._plan, self._calls = [], []

    def _add(
        self, tag: tuple[Any, ...], target: str, data: bytes, gas: int | None = None, slot: int | None = None
    ) -> None:
        """Append one call to the plan under `tag` (the reader's own gas estimate unless `gas` is given)."""
        self._add_call(tag, Call(target, data, self._gas if gas is None else gas, slot))

    def _add_call(self, tag: tuple[Any, ...], call: Call) -> None:
        """Append a call built elsewhere (e.g. by a helper that plans its own reads)."""
        assert isinstance(self._plan, list) and isinstance(self._calls, list), "_add before _replan"
        self._plan.append(tag)
        self._calls.append(call)

    def parse(self, results: Sequence[tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        """Positions at `block`, or None when this round showed that another one is needed."""
        if len(results) != len(self._plan):
            raise ReadError(f"{self.protocol}/{self.chain}: expected {len(self._plan)} answers, got {len(results)}")
        got: dict[tuple[Any, ...], tuple[bool, bytes]] = dict(zip(self._plan, results, strict=True))
        try:
            return self._parse(got, block)
        except (ValueError, KeyError, IndexError, OverflowError, TypeError) as exc:
            raise ReadError(f"{self.protocol}/{self.chain}: malformed answer: {type(exc).__name__}: {exc}") from None

    def _parse(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        raise NotImplementedError

    def _required(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], tag: tuple[Any, ...], n: int) -> list[int]:
        """The first `n` words of a call that must have succeeded."""
        ok, data = got[tag]
        if not ok or len(data) < 32 * n:
            raise ReadError(f"{self.protocol}/{self.chain}: call {tag[0]} {tag[1:]} reverted or was short")
        return words(data)[:n]


class Reader(Protocol):
    """Reads one protocol deployment for a set of accounts; pure: the chain layer does all I/O."""

    protocol: str
    chain: str
    accounts: list[Account]
    #: accounts the last successful parse could not value, with the reason (they are unknown, not healthy)
    skipped: list[tuple[Account, str]]

    def calls(self) -> list[Call]:
        """The reads this round needs, given what earlier checks learned."""
        ...

    def parse(self, results: Sequence[tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        """Positions from the answers, or None when an assumption failed and another round is needed."""
        ...


@runtime_checkable
class LogReader(Protocol):
    """A reader that learns from event logs too (Morpho's market discovery); pure like every reader.

    Before each check's first round the check asks `log_queries(head)`, runs them through the chain client (the same
    deadlines, size caps, failover and range splitting as every read) and hands the answers to `take_logs`, in the
    order asked. A reader with nothing to ask returns no queries.
    """

    def log_queries(self, head: int) -> list[LogQuery]:
        """The eth_getLogs queries this check needs up to block `head`, or none."""
        ...

    def take_logs(self, head: int, logs: Sequence[list[dict[str, Any]]]) -> None:
        """Learn from the answers to `log_queries(head)`; ReadError when one cannot be trusted."""
        ...


class VenueReader(Protocol):
    """Reads an off-chain venue (an HTTP API such as Hyperliquid's or dYdX's indexer) for a set of accounts."""

    protocol: str
    chain: str  #: the venue's name in the config, used where a chain name would be
    accounts: list[Account]
    skipped: list[tuple[Account, str]]

    async def read(self, session: Any) -> list[Position]:
        """Positions now, read through the aiohttp `session`; ReadError when an answer cannot be trusted."""
        ...
