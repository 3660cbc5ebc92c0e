"""Positions of Hyperliquid accounts from a snapshot: cross and isolated margin, legs and liquidation prices."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from watcher.adapters.base import Account, ReadError
from watcher.adapters.hyperliquid.margin import (
    _base,
    _ceil,
    _ratio_wad,
    _tier_index,
    liquidation_price,
    maintenance,
)
from watcher.adapters.hyperliquid.parse import (
    PROTOCOL,
    USD,
    HyperliquidSnapshot,
)
from watcher.adapters.hyperliquid.simulator import simulator_of
from watcher.margin import fixed_decimal as _fmt
from watcher.model import BlockRef, Leg, PerpLeg, Position


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
            if pos.coin in snapshot.funding:
                extra["funding_hourly"] = _fmt(snapshot.funding[pos.coin], 12)
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
                simulator=simulator_of(
                    state, snapshot.markets, snapshot.marks, snapshot.funding, snapshot.oracles, snapshot.fetched_at
                ),
                cross_equity=(state.cross_account_value * USD).__floor__() if has_cross else None,
            )
        )
    return out
