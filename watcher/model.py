"""The common risk model: positions of collateral and debt legs, in each protocol's own integer units."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from fractions import Fraction
from typing import Any, Protocol

WAD = 10**18
BPS = 10_000
MAX_UINT256 = 2**256 - 1


class Simulator(Protocol):
    """Exact replay of a protocol's own health check, with prices or balances changed."""

    def health(self) -> int | None:
        """Health in WAD as the protocol computes it; None when there is no debt."""
        ...

    def at_time(self, timestamp: int) -> Simulator:
        """The same position with interest accrued to `timestamp`."""
        ...

    def with_price(self, asset: str, price: int) -> Simulator:
        """The same position with one asset's oracle price replaced."""
        ...

    def with_supply(self, asset: str, amount: int) -> Simulator:
        """The same position after supplying `amount` base units of collateral `asset`."""
        ...

    def with_repay(self, asset: str, amount: int) -> Simulator:
        """The same position after repaying `amount` base units of debt `asset`."""
        ...


@dataclass(frozen=True, slots=True)
class Leg:
    """One asset of a position, valued as the protocol values it."""

    asset: str  #: token address (checksum)
    symbol: str  #: token symbol, for display only
    decimals: int  #: token decimals
    amount: int  #: balance in token base units, as the protocol counts it at the read block
    price: int  #: oracle price of one whole token, in base-currency units
    value: int  #: amount valued in base-currency units, rounded as the protocol rounds
    weight_bps: int = 0  #: maintenance weight (e.g. Aave's liquidation threshold) in bps; 0 on debt legs


@dataclass(frozen=True, slots=True)
class PerpLeg:
    """One perpetual position, with the maintenance requirement the venue asks at its size.

    Money (notional, requirement, equity) is in the Position's base units (e.g. micro-USD), rounded against the user:
    requirements up, equity down. Prices are exact rationals in whole units of the base currency per whole coin
    (e.g. 3100 for ETH at $3,100, whatever the Position's base_unit), since a venue's price grid (e.g. 1e-30 USD per
    wei of a GMX token) has no fixed decimals.
    """

    market: str  #: the venue's market name, e.g. "ETH" or "ETH-USD"
    size: int  #: signed, in base units of the market (10**-size_decimals coins); positive is long
    size_decimals: int
    entry_price: Fraction
    mark_price: Fraction  #: the price the venue margins at (mark, oracle or index)
    notional: int  #: |size| * mark_price, in base units
    requirement: int  #: maintenance margin at this size (tiered, size- or open-interest-scaled)
    rate: Fraction  #: the maintenance rate at this size, as a fraction of notional
    margin_mode: str = "cross"  #: "cross" (shares the account's equity) or "isolated"
    tier: int | None = None  #: index of the venue's margin tier this size is in (None where rates are not tiered)
    equity: int | None = None  #: isolated only: the margin backing this position, PnL and pending fees included
    liquidation_price: Fraction | None = None  #: ours, tiers and scaling included; None if no price liquidates
    venue_liquidation_price: Fraction | None = None  #: the venue's own figure where it publishes one
    liquidation_tier: int | None = None  #: the tier the position is in at its liquidation price
    details: Mapping[str, Any] = field(default_factory=dict)  #: venue extras (pending fees, funding, OI factor ...)

    @property
    def side(self) -> str:
        """ "long" or "short"."""
        return "long" if self.size > 0 else "short"


class Level(IntEnum):
    """Level of a position, from best to worst (a worse level compares greater); UNKNOWN when it could not be read.

    The one enum for it: alert rules order and count by it, and it is stored as its number in the alert state;
    JSON, the API and messages show its word.
    """

    OK = 0
    WARN = 1
    CRITICAL = 2
    LIQUIDATABLE = 3
    UNKNOWN = 4

    @property
    def word(self) -> str:
        """ok, warn, critical, liquidatable or unknown."""
        return self.name.lower()

    def __str__(self) -> str:
        return self.word


@dataclass(frozen=True, slots=True)
class BlockRef:
    """The block a check read its state at."""

    number: int
    timestamp: int
    hash: str = ""


@dataclass(frozen=True)
class Position:
    """One account's position in one protocol deployment, normalised."""

    protocol: str  #: protocol name, as in protocols/ (aave_v3, spark, ...)
    chain: str  #: chain name from the config
    account: str  #: owner address (checksum)
    label: str  #: the account's label from the config
    collateral: tuple[Leg, ...]
    debt: tuple[Leg, ...]
    health: int | None  #: WAD; None when there is no debt (health is unbounded)
    liquidatable: bool  #: the protocol's own verdict, replayed exactly
    base_unit: int  #: one unit of the base currency (1e8 on Aave USD markets)
    base_currency: str  #: e.g. "USD"
    block: BlockRef
    details: Mapping[str, Any] = field(default_factory=dict)  #: protocol extras (revision, eMode ...)
    simulator: Simulator | None = field(default=None, compare=False, repr=False)
    perps: tuple[PerpLeg, ...] = ()  #: perpetual positions (health is then equity over requirement)
    cross_equity: int | None = None  #: perps: the equity backing the cross-margined legs, in base units

    @property
    def key(self) -> str:
        """A stable id: protocol, chain and account (and the market, where one account has several)."""
        base = f"{self.protocol}:{self.chain}:{self.account}"
        market = self.details.get("market_id")
        return f"{base}:{market}" if market else base

    @property
    def total_collateral(self) -> int:
        """Collateral value in base-currency units."""
        return sum(leg.value for leg in self.collateral)

    @property
    def total_debt(self) -> int:
        """Debt value in base-currency units."""
        return sum(leg.value for leg in self.debt)

    @property
    def has_debt(self) -> bool:
        """Whether anything is borrowed."""
        return any(leg.amount for leg in self.debt)
