"""What an adapter gives the chain layer: calls to batch, and a parser for their answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from watcher.model import BlockRef, Position


@dataclass(frozen=True, slots=True)
class Call:
    """One read, to be batched with all others on the chain into one aggregate call."""

    target: str  #: contract address (0x-prefixed hex)
    data: bytes  #: ABI-encoded calldata
    gas: int = 30_000  #: a generous estimate, used to size batches under the node's eth_call gas cap


@dataclass(frozen=True, slots=True)
class Account:
    """An account to watch in a deployment."""

    address: str
    label: str


class ReadError(Exception):
    """The chain's answer cannot be trusted: a required call reverted or returned malformed data."""


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
