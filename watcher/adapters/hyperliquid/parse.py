"""Hyperliquid info API answers parsed exactly (Fraction of the served decimals): markets, positions, accounts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from watcher.adapters.base import ReadError
from watcher.margin import Tier, hyperliquid_tiers, with_deductions

PROTOCOL = "hyperliquid"
USD = 10**6  #: quote units: micro-dollars, the common model's base unit for this venue
#: the API writes plain decimals; an exponent such as "1e9999999" would make Fraction build an enormous integer
#: (seconds of CPU on the event loop)
_PLAIN = re.compile(r"^-?[0-9]{1,60}(\.[0-9]{1,60})?$")
_MAX_SZ_DECIMALS = 18  #: perp size decimals are small (at most 6 for perps); anything wild is a malformed answer
#: Hyperliquid's implied margin tables: ids below this are single-tier tables whose max leverage is the id itself
_IMPLIED_TABLE_LIMIT = 50


@dataclass(frozen=True, slots=True)
class Market:
    """One perp market from meta: size decimals and its maintenance tiers."""

    name: str
    sz_decimals: int
    tiers: tuple[Tier, ...]


@dataclass(frozen=True, slots=True)
class PerpPosition:
    """One open position as the venue reports it (USD amounts and prices per whole coin)."""

    coin: str
    size: Fraction  #: signed, in coins: positive long
    entry_px: Fraction
    unrealized_pnl: Fraction
    margin_used: Fraction
    isolated: bool
    raw_usd: Fraction | None  #: isolated only: equity = raw_usd + size * mark
    liquidation_px: Fraction | None  #: the venue's own figure


@dataclass(frozen=True, slots=True)
class AccountState:
    """One user's clearinghouse state."""

    user: str
    account_value: Fraction  #: whole account, isolated margins included
    cross_account_value: Fraction  #: cross equity, the side the cross maintenance check uses
    cross_maintenance_used: Fraction  #: the venue's own cross maintenance figure, for comparison
    positions: tuple[PerpPosition, ...]


@dataclass(frozen=True, slots=True)
class HyperliquidSnapshot:
    """Everything one check read: markets used, mark prices, and each user's state."""

    markets: Mapping[str, Market]
    marks: Mapping[str, Fraction]
    accounts: Mapping[str, AccountState]
    fetched_at: int  #: unix seconds; the info API has no block to pin to
    funding: Mapping[str, Fraction] = field(default_factory=dict)  #: hourly funding rate per coin, where served
    oracles: Mapping[str, Fraction] = field(default_factory=dict)  #: oracle price per coin (funding is charged on it)


def _dec(obj: Mapping[str, Any], key: str, where: str) -> Fraction:
    """A required decimal-string field as an exact Fraction, or ReadError naming it."""
    if not isinstance(obj, Mapping) or key not in obj or obj[key] is None:
        raise ReadError(f"hyperliquid: {where}: missing field {key!r}")
    value = obj[key]
    # bool is an int subclass and floats are inexact: both mean the answer is not what the API documents
    if isinstance(value, (bool, float)):
        raise ReadError(f"hyperliquid: {where}: field {key!r} is not a decimal string: {value!r}")
    if not _PLAIN.match(str(value)):
        raise ReadError(f"hyperliquid: {where}: field {key!r} is not a plain decimal: {str(value)[:40]!r}")
    try:
        return Fraction(str(value))
    except (ValueError, ZeroDivisionError) as exc:
        raise ReadError(f"hyperliquid: {where}: field {key!r} is not a number: {value!r}") from exc


def _field(obj: Any, key: str, where: str) -> Any:
    """A required field of any type, or ReadError naming it."""
    if not isinstance(obj, Mapping) or key not in obj:
        raise ReadError(f"hyperliquid: {where}: missing field {key!r}")
    return obj[key]


def _tables(meta: Mapping[str, Any]) -> dict[int, Mapping[str, Any]]:
    """marginTables as a dict by id."""
    out: dict[int, Mapping[str, Any]] = {}
    tables = meta.get("marginTables", [])
    if not isinstance(tables, list):
        raise ReadError("hyperliquid: meta: marginTables is not a list")
    for row in tables:
        if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], int) and isinstance(row[1], Mapping)):
            raise ReadError(f"hyperliquid: meta: malformed marginTables entry {row!r}")
        out[row[0]] = row[1]
    return out


def parse_market(asset: Mapping[str, Any], tables: Mapping[int, Mapping[str, Any]]) -> Market:
    """A Market from a meta universe entry and the margin tables."""
    name = str(_field(asset, "name", "meta.universe"))
    where = f"meta.universe[{name}]"
    sz = _field(asset, "szDecimals", where)
    max_lev = _field(asset, "maxLeverage", where)
    # The documented shape has no marginTableId (nor marginTables): one tier at the asset's max leverage.
    implied = "marginTableId" not in asset
    table_id = asset.get("marginTableId", max_lev)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (sz, max_lev, table_id)):
        raise ReadError(f"hyperliquid: {where}: szDecimals/maxLeverage/marginTableId must be integers")
    # a negative szDecimals would turn sizes into floats; a huge one would build an enormous power of ten
    if not 0 <= sz <= _MAX_SZ_DECIMALS:
        raise ReadError(f"hyperliquid: {where}: szDecimals {sz} out of range")
    try:
        if table_id in tables:
            tiers = hyperliquid_tiers(tables[table_id], USD)
        elif (implied or table_id < _IMPLIED_TABLE_LIMIT) and table_id == max_lev and max_lev > 0:
            # small ids are not listed: they stand for one tier at the asset's max leverage (maintenance margin is
            # half the initial margin at max leverage)
            tiers = with_deductions([(0, Fraction(1, 2 * max_lev))])
        else:
            raise ReadError(f"hyperliquid: {where}: margin table {table_id} not in meta")
    except (KeyError, TypeError, ValueError) as exc:
        raise ReadError(f"hyperliquid: {where}: malformed margin table {table_id}: {exc}") from exc
    return Market(name, sz, tiers)


def parse_position(entry: Any, user: str) -> PerpPosition:
    """A PerpPosition from one assetPositions entry."""
    pos = _field(entry, "position", f"clearinghouseState[{user}].assetPositions")
    coin = str(_field(pos, "coin", f"clearinghouseState[{user}].position"))
    where = f"clearinghouseState[{user}].position[{coin}]"
    lev = _field(pos, "leverage", where)
    kind = _field(lev, "type", f"{where}.leverage")
    if kind not in ("cross", "isolated"):
        raise ReadError(f"hyperliquid: {where}: unknown leverage type {kind!r}")
    isolated = kind == "isolated"
    liq = pos.get("liquidationPx") if isinstance(pos, Mapping) else None
    return PerpPosition(
        coin=coin,
        size=_dec(pos, "szi", where),
        entry_px=_dec(pos, "entryPx", where),
        unrealized_pnl=_dec(pos, "unrealizedPnl", where),
        margin_used=_dec(pos, "marginUsed", where),
        isolated=isolated,
        raw_usd=_dec(lev, "rawUsd", f"{where}.leverage") if isolated else None,
        liquidation_px=None if liq is None else _dec(pos, "liquidationPx", where),
    )


def parse_account(user: str, state: Any) -> AccountState:
    """An AccountState from a clearinghouseState answer."""
    where = f"clearinghouseState[{user}]"
    summary = _field(state, "marginSummary", where)
    cross = _field(state, "crossMarginSummary", where)
    entries = _field(state, "assetPositions", where)
    if not isinstance(entries, list):
        raise ReadError(f"hyperliquid: {where}: assetPositions is not a list")
    return AccountState(
        user=user,
        account_value=_dec(summary, "accountValue", f"{where}.marginSummary"),
        cross_account_value=_dec(cross, "accountValue", f"{where}.crossMarginSummary"),
        cross_maintenance_used=_dec(state, "crossMaintenanceMarginUsed", where),
        positions=tuple(parse_position(e, user) for e in entries),
    )
