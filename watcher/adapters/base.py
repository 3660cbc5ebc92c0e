"""What an adapter gives the chain layer: calls to batch, and a parser for their answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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
class Account:
    """An account to watch in a deployment."""

    address: str
    label: str


class ReadError(Exception):
    """The chain's answer cannot be trusted: a required call reverted or returned malformed data."""


class TaggedReader:
    """Shared answer handling for readers that tag each call: pair answers with tags, then `_parse` them.

    Subclasses keep `_plan` (one tag per call, in order) and implement `_parse(got, block)`; malformed data of
    any kind becomes a ReadError naming the deployment, so it reads as unknown, never as healthy.
    """

    protocol: str
    chain: str
    _plan: list[tuple[Any, ...]]

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


class VenueReader(Protocol):
    """Reads an off-chain venue (an HTTP API such as Hyperliquid's or dYdX's indexer) for a set of accounts."""

    protocol: str
    chain: str  #: the venue's name in the config, used where a chain name would be
    accounts: list[Account]
    skipped: list[tuple[Account, str]]

    async def read(self, session: Any) -> list[Position]:
        """Positions now, read through the aiohttp `session`; ReadError when an answer cannot be trusted."""
        ...
