"""Hyperliquid perpetuals: read the info API, replay tiered maintenance margins exactly, and project into Positions.

Money is exact: the API's decimal strings are parsed with Fraction(str), notionals are micro-USD, and prices are
converted to micro-USD per base unit (10**-szDecimals of a coin) so watcher.margin's integer-size formulas apply.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import aiohttp

from watcher.adapters.base import Account, ReadError
from watcher.adapters.http import DEFAULT_MAX_BYTES, all_answers, request_json
from watcher.config.values import evm_address
from watcher.margin import Tier, hyperliquid_tiers, isolated_liquidation_price, with_deductions
from watcher.model import WAD, BlockRef, Leg, PerpLeg, Position
from watcher.registry import VenueProtocol, register

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


async def _post(
    session: aiohttp.ClientSession, url: str, body: Mapping[str, Any], timeout: float, max_bytes: int
) -> Any:
    """One info request; any transport, status or JSON problem becomes a ReadError."""
    what = str(body.get("type"))
    return await request_json(
        session, "POST", url, venue=PROTOCOL, what=what, timeout=timeout, body=body, max_bytes=max_bytes
    )


async def fetch_state(
    session: aiohttp.ClientSession,
    base_url: str,
    users: list[str],
    timeout: float = 10.0,
    max_age: float = 120.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> HyperliquidSnapshot:
    """Read meta with the asset contexts (mark prices) and each user's clearinghouse state; ReadError on anything odd.

    Liquidations use the MARK price (Hyperliquid docs, Liquidations), which metaAndAssetCtxs serves as markPx, one
    context per meta.universe entry in the same order. allMids serves order-book mids: not what the venue margins at.
    """
    url = base_url.rstrip("/") + "/info"
    both, *states = await all_answers(
        _post(session, url, {"type": "metaAndAssetCtxs"}, timeout, max_bytes),
        *(_post(session, url, {"type": "clearinghouseState", "user": u}, timeout, max_bytes) for u in users),
    )
    if not (isinstance(both, list) and len(both) == 2):
        raise ReadError("hyperliquid: metaAndAssetCtxs is not a [meta, assetCtxs] pair")
    meta, ctxs = both
    universe = _field(meta, "universe", "meta")
    if not isinstance(universe, list) or not isinstance(ctxs, list) or len(ctxs) != len(universe):
        raise ReadError("hyperliquid: meta.universe or assetCtxs has the wrong shape")
    by_name = {a.get("name"): (a, c) for a, c in zip(universe, ctxs, strict=True) if isinstance(a, Mapping)}
    tables = _tables(meta)
    now = time.time()
    for u, st in zip(users, states, strict=True):
        # clearinghouseState carries the time it was computed (ms): a venue serving old state is unknown, not healthy
        stamp = st.get("time") if isinstance(st, Mapping) else None
        if stamp is not None:
            if not isinstance(stamp, int) or isinstance(stamp, bool):
                raise ReadError(f"hyperliquid: clearinghouseState({u}).time is not milliseconds: {str(stamp)[:40]!r}")
            if now - stamp / 1000 > max_age:
                raise ReadError(
                    f"hyperliquid: clearinghouseState({u}) is {now - stamp / 1000:.0f} s old (max {max_age:.0f} s): "
                    "its state is stale"
                )
    accounts = {u: parse_account(u, s) for u, s in zip(users, states, strict=True)}
    markets: dict[str, Market] = {}
    marks: dict[str, Fraction] = {}
    for acct in accounts.values():
        for pos in acct.positions:
            if pos.coin in markets:
                continue
            if pos.coin not in by_name:
                raise ReadError(f"hyperliquid: unknown coin {pos.coin!r} (not in meta.universe)")
            asset, ctx = by_name[pos.coin]
            markets[pos.coin] = parse_market(asset, tables)
            mark = _dec(ctx, "markPx", f"assetCtxs[{pos.coin}]")
            if mark <= 0:
                raise ReadError(f"hyperliquid: assetCtxs: non-positive mark for {pos.coin}: {mark}")
            marks[pos.coin] = mark
    return HyperliquidSnapshot(markets, marks, accounts, int(time.time()))


# --- pure valuation ---------------------------------------------------------------------------------------------------


def _tier_index(notional: Fraction, tiers: Sequence[Tier]) -> int:
    """Index of the tier a (micro-USD) notional falls in."""
    index = 0
    for i, t in enumerate(tiers):
        if notional >= t.lower_bound:
            index = i
    return index


def maintenance(notional: Fraction, tiers: Sequence[Tier]) -> tuple[Fraction, int]:
    """Exact maintenance requirement (micro-USD) of a notional and its tier index; notional need not be integral."""
    i = _tier_index(abs(notional), tiers)
    return abs(notional) * tiers[i].rate - tiers[i].deduction, i


def _base(pos: PerpPosition, market: Market) -> tuple[int, Fraction]:
    """Size in base units and the factor from USD per coin to micro-USD per base unit."""
    units = pos.size * 10**market.sz_decimals
    if units.denominator != 1:
        raise ReadError(f"hyperliquid: {pos.coin}: size {pos.size} is finer than szDecimals={market.sz_decimals}")
    return int(units), Fraction(USD, 10**market.sz_decimals)


def liquidation_price(pos: PerpPosition, market: Market, mark: Fraction, margin: Fraction) -> Fraction | None:
    """Our own liquidation price in USD per coin: where margin + size * (p - mark) meets the tiered requirement.

    `margin` is the position's equity at `mark` (USD) less whatever else must stay covered; for isolated positions
    it is the isolated equity, for cross the account value less the other positions' requirements at their marks.
    """
    units, per_base = _base(pos, market)
    p = isolated_liquidation_price(units, mark * per_base, margin * USD, market.tiers)
    return None if p is None else p / per_base


def _fmt(x: Fraction | None, places: int = 8) -> str | None:
    """A Fraction as a rounded decimal string, for JSON-safe details only (decisions use the Fractions)."""
    if x is None:
        return None
    scaled = round(x * 10**places)
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10**places)
    return f"{sign}{whole}.{frac:0{places}d}"


def _ratio_wad(equity: Fraction, req: Fraction) -> int | None:
    """equity / requirement in WAD, floored; None when nothing is required."""
    return None if req <= 0 else (equity * WAD / req).__floor__()


def _ceil(x: Fraction) -> int:
    return -((-x).__floor__())


def positions_from(snapshot: HyperliquidSnapshot, accounts: Sequence[Account], chain: str = PROTOCOL) -> list[Position]:
    """One Position per account: health is the worst of the cross ratio and each isolated ratio."""
    out: list[Position] = []
    block = BlockRef(number=0, timestamp=snapshot.fetched_at)
    for account in accounts:
        state = snapshot.accounts.get(account.address) or snapshot.accounts.get(account.address.lower())
        if state is None:
            raise ReadError(f"hyperliquid: no clearinghouseState read for {account.address}")
        legs: list[PerpLeg] = []
        reqs: dict[int, Fraction] = {}
        for i, pos in enumerate(state.positions):
            market, mark = snapshot.markets[pos.coin], snapshot.marks[pos.coin]
            req, _ = maintenance(abs(pos.size) * mark * USD, market.tiers)
            reqs[i] = req
        has_cross = any(not p.isolated for p in state.positions)
        cross_req = sum((reqs[i] for i, p in enumerate(state.positions) if not p.isolated), Fraction(0))
        cross_liq = has_cross and state.cross_account_value * USD < cross_req
        cross_health = _ratio_wad(state.cross_account_value * USD, cross_req) if has_cross else None
        healths = [h for h in (cross_health,) if h is not None]
        any_liq = cross_liq
        for i, pos in enumerate(state.positions):
            market, mark = snapshot.markets[pos.coin], snapshot.marks[pos.coin]
            units, _ = _base(pos, market)
            notional = abs(pos.size) * mark * USD
            req, tier = reqs[i], _tier_index(notional, market.tiers)
            extra: dict[str, Any] = {"requirement_exact_usd": _fmt(req / USD)}
            equity: int | None = None
            if pos.isolated:
                assert pos.raw_usd is not None  # parse_position requires rawUsd for isolated positions
                # isolated equity = margin + uPnL = rawUsd + size * mark (rawUsd nets the entry notional)
                iso = pos.raw_usd + pos.size * mark
                liq = liquidation_price(pos, market, mark, iso)
                pos_liq = iso * USD < req
                health = _ratio_wad(iso * USD, req)
                equity = (iso * USD).__floor__()
                extra |= {"health": health, "liquidatable": pos_liq}
                any_liq = any_liq or pos_liq
                if health is not None:
                    healths.append(health)
            else:
                # several cross positions: the others are held at their marks, so their requirement is fixed
                others = cross_req - req
                liq = liquidation_price(pos, market, mark, state.cross_account_value - others / USD)
            legs.append(
                PerpLeg(
                    market=pos.coin,
                    size=units,
                    size_decimals=market.sz_decimals,
                    entry_price=pos.entry_px,
                    mark_price=mark,
                    notional=notional.__floor__(),
                    requirement=_ceil(req),  # rounded up: a requirement is never understated
                    rate=market.tiers[tier].rate,
                    margin_mode="isolated" if pos.isolated else "cross",
                    tier=tier,
                    equity=equity,
                    liquidation_price=liq,
                    venue_liquidation_price=pos.liquidation_px,
                    liquidation_tier=None if liq is None else _tier_index(abs(pos.size) * liq * USD, market.tiers),
                    details=extra,
                )
            )
        value = (state.account_value * USD).__floor__()  # rounded down: equity is never overstated
        out.append(
            Position(
                protocol=PROTOCOL,
                chain=chain,
                account=account.address,
                label=account.label,
                collateral=(Leg("USD", "USD", 6, value, USD, value, 10_000),),
                debt=(),
                health=min(healths) if healths else None,
                liquidatable=any_liq,
                base_unit=USD,
                base_currency="USD",
                block=block,
                details={
                    "account_value_usd": _fmt(state.account_value),
                    "cross_requirement_usd": _fmt(cross_req / USD),
                    "venue_cross_maintenance_usd": _fmt(state.cross_maintenance_used),
                    "cross_health": cross_health,
                    "cross_liquidatable": cross_liq,
                },
                perps=tuple(legs),
                cross_equity=(state.cross_account_value * USD).__floor__() if has_cross else None,
            )
        )
    return out


class HyperliquidReader:
    """Hyperliquid accounts read over the info API at `base_url` (configurable, so tests serve it on 127.0.0.1)."""

    protocol = PROTOCOL

    def __init__(
        self,
        name: str,
        base_url: str,
        accounts: Sequence[Account],
        timeout: float = 10.0,
        max_age: float = 120.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.max_bytes = max_bytes  #: bytes one answer may have
        self.max_age = max_age  #: seconds: older state from the venue is unknown, never healthy
        self.chain = name
        self.base_url = base_url
        self.accounts = list(accounts)
        self.timeout = timeout
        self.skipped: list[tuple[Account, str]] = []

    async def read(self, session: aiohttp.ClientSession) -> list[Position]:
        """Every account's positions now; ReadError when any answer cannot be trusted."""
        # the info API documents users as lowercase hex; config addresses are checksummed
        users = [a.address.lower() for a in self.accounts]
        snap = await fetch_state(session, self.base_url, users, self.timeout, self.max_age, self.max_bytes)
        return positions_from(snap, self.accounts, self.chain)


def make_venue_reader(venue: Any, accounts: Sequence[Account]) -> HyperliquidReader:
    """The reader of a resolved [venues.<name>] of Hyperliquid."""
    return HyperliquidReader(
        venue.name, venue.base_url, list(accounts), venue.timeout, venue.max_age, venue.max_response_bytes
    )


register(VenueProtocol("hyperliquid", make_venue_reader, address=evm_address, evm_accounts=True))
