"""One dYdX v4 Position per subaccount: the chain's verdict, health NC/MMR, legs and liquidation prices."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from watcher.adapters.base import Account, ReadError
from watcher.adapters.dydx_v4.math import (
    PPM,
    USDC,
    is_liquidatable,
)
from watcher.adapters.dydx_v4.parse import (
    FIRST_ISOLATED_SUBACCOUNT,
    PROTOCOL,
    Market,
    Subaccount,
)
from watcher.adapters.dydx_v4.simulator import simulator_of
from watcher.adapters.dydx_v4.valuation import (
    _usdc_quantums,
    liquidation_price,
    value,
)
from watcher.margin import fixed_decimal as _fmt
from watcher.model import WAD, BlockRef, Leg, PerpLeg, Position


def position_of(
    sub: Subaccount, markets: Mapping[str, Market], account: Account, chain: str, fetched_at: int
) -> Position:
    """One Position for one subaccount: the chain's verdict, health NC/MMR, legs and liquidation prices."""
    valued = []
    for h in sub.holdings:
        if h.market not in markets:
            raise ReadError(f"{PROTOCOL}: subaccount {sub.address}/{sub.number}: unknown market {h.market!r}")
        valued.append(value(h, markets[h.market]))
    usdc = _usdc_quantums(sub.usdc)
    nc = usdc + sum(v.notional for v in valued)
    mmr = sum(v.mmr for v in valued)
    imr = sum(v.imr for v in valued)
    imr_base = sum(v.imr_base for v in valued)
    liquidatable = is_liquidatable(nc, mmr)
    # one margin group per subaccount; a lone position in a child (128+) subaccount or an ISOLATED market is isolated
    isolated = len(valued) == 1 and (
        sub.number >= FIRST_ISOLATED_SUBACCOUNT or valued[0].market.market_type == "ISOLATED"
    )
    mode = "isolated" if isolated else "cross"
    legs = []
    for v in valued:
        m = v.market
        liq = liquidation_price(v, nc - v.notional, mmr - v.mmr)
        legs.append(
            PerpLeg(
                market=m.ticker,
                size=v.quantums,
                size_decimals=-m.atomic_resolution,
                entry_price=v.holding.entry_price,
                mark_price=m.oracle_price,
                notional=abs(v.notional),
                requirement=v.mmr,
                rate=Fraction(m.imf_ppm * m.fraction_ppm, PPM * PPM),
                margin_mode=mode,
                tier=None,
                equity=nc if isolated else None,
                liquidation_price=liq,
                venue_liquidation_price=None,  # the indexer publishes none
                liquidation_tier=None,
                details={
                    "oracle_price_usdc": _fmt(m.oracle_price, m.price_decimals),
                    "liquidation_price_usdc": _fmt(liq, m.price_decimals),
                    "price_unit_usdc": _fmt(Fraction(1, 10**m.price_decimals), m.price_decimals),
                    "market_type": m.market_type,
                    "imf_ppm": m.imf_ppm,
                    "imf_effective_ppm": v.imf_effective_ppm,
                    "maintenance_fraction_ppm": m.fraction_ppm,
                    "maintenance_fraction_exact": m.fraction_exact,
                    "initial_requirement": v.imr,
                    "oi_notional": m.oi_notional,
                    "oi_lower_cap": m.oi_lower_cap,
                    "oi_upper_cap": m.oi_upper_cap,
                    "net_funding_usdc": _fmt(v.holding.net_funding),
                    "venue_unrealized_pnl_usdc": _fmt(v.holding.unrealized_pnl),
                },
            )
        )
    # the indexer's equity uses untruncated notionals (< 1 quantum off each) and its freeCollateral the unrounded base
    # initial margin (< 1 more each); the balance floor adds < 1 on both
    tol = 2 * len(valued) + 1
    details: dict[str, Any] = {
        "market_id": f"sub{sub.number}",
        "subaccount": sub.number,
        "margin_mode": mode,
        "net_collateral": nc,
        "maintenance_requirement": mmr,
        "initial_requirement": imr,
        "free_collateral": nc - imr,
        "usdc_quantums": usdc,
        "indexer_height": sub.height,
    }
    if sub.equity is not None:
        venue_eq = sub.equity * USDC
        details["venue_equity_usdc"] = _fmt(sub.equity, 6)
        details["equity_agrees"] = abs(venue_eq - nc) <= tol
    if sub.free_collateral is not None:
        venue_fc = sub.free_collateral * USDC
        details["venue_free_collateral_usdc"] = _fmt(sub.free_collateral, 6)
        details["free_collateral_agrees"] = abs(venue_fc - (nc - imr_base)) <= tol
    if details.get("equity_agrees") is False or details.get("free_collateral_agrees") is False:
        details["venue_mismatch"] = "the indexer's figures differ beyond rounding; the protocol formula is used"
    return Position(
        protocol=PROTOCOL,
        chain=chain,
        account=sub.address,
        label=account.label,
        collateral=(Leg("USDC", "USDC", 6, usdc, USDC, usdc, 10_000),),
        debt=(),
        health=None if mmr <= 0 else nc * WAD // mmr,
        liquidatable=liquidatable,
        base_unit=USDC,
        base_currency="USDC",
        block=BlockRef(number=sub.height, timestamp=fetched_at),
        details=details,
        perps=tuple(legs),
        cross_equity=None if isolated or not legs else nc,
        simulator=simulator_of(usdc, [v.market for v in valued], [v.quantums for v in valued], fetched_at),
    )
