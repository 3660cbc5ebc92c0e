"""Hyperliquid perpetuals: read the info API, replay tiered maintenance margins exactly, and project into Positions.

Money is exact: the API's decimal strings are parsed with Fraction(str), notionals are micro-USD, and prices are
converted to micro-USD per base unit (10**-szDecimals of a coin) so watcher.margin's integer-size formulas apply.
"""

from __future__ import annotations

from watcher.adapters.hyperliquid.fetch import fetch_state
from watcher.adapters.hyperliquid.margin import (
    liquidation_price,
    maintenance,
)
from watcher.adapters.hyperliquid.parse import (
    PROTOCOL,
    USD,
    AccountState,
    HyperliquidSnapshot,
    Market,
    PerpPosition,
    parse_account,
    parse_market,
    parse_position,
)
from watcher.adapters.hyperliquid.position import positions_from
from watcher.adapters.hyperliquid.reader import (
    HyperliquidReader,
    make_venue_reader,
)
from watcher.adapters.hyperliquid.simulator import HlMarket, HyperliquidSimulator, simulator_of
from watcher.config.values import evm_address
from watcher.registry import VenueProtocol, register

__all__ = [
    "PROTOCOL",
    "USD",
    "AccountState",
    "HlMarket",
    "HyperliquidReader",
    "HyperliquidSimulator",
    "HyperliquidSnapshot",
    "Market",
    "PerpPosition",
    "fetch_state",
    "liquidation_price",
    "maintenance",
    "make_venue_reader",
    "parse_account",
    "parse_market",
    "parse_position",
    "positions_from",
    "simulator_of",
]

register(VenueProtocol("hyperliquid", make_venue_reader, address=evm_address, evm_accounts=True))
