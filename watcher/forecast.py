"""Time to liquidation at constant prices, the daily interest cost and each leg's APY, solved on the simulator.

Prices stay as read; only time moves, through each simulator's own `at_time` (the protocol's accrual replayed).
The search assumes that once the protocol's check turns liquidatable it stays so while prices hold. For lending
this follows from the shape of the accrual: collateral grows at most linearly (Aave's income index) or not at all,
debt compounds (convex in time), so "collateral x threshold - debt" is concave in time and its non-negative set
is one interval: from a healthy start, the liquidatable seconds are a ray [T, oo). The answer is checked where it
is found: the protocol's verdict says liquidatable at T and not at T - 1. Simulators whose time path is not of
that shape or whose `at_time` does not accrue get no time ("not modelled"), never a made-up one, unless their
model brings a search of its own: Synthetix perps, whose funding can turn in the account's favour, is searched on
each side of its one turning point (watcher/forecast_perps.py states that argument and GMX v2's), and Hyperliquid's
hourly funding at a constant rate takes the same amount from each margin group every hour (a one-way path per
group), so its simulator solves the hour in closed form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal, localcontext
from typing import Any

from watcher import forecast_perps as perps
from watcher.model import WAD, Position, Simulator
from watcher.risk import least_true

DAY = 86_400
YEAR = 365 * DAY
#: beyond this, "none": a forecast decades out at constant rates says nothing useful
DEFAULT_HORIZON = 10 * YEAR
RAY = 10**27


@dataclass(frozen=True, slots=True)
class Forecast:
    """What time alone does to a position at constant prices."""

    at: int | None  #: the first second at which the protocol's check says liquidatable; None within the horizon
    horizon_s: int
    start: int  #: the read block's timestamp the search starts at
    modelled: bool  #: False when the protocol's accrual over time is not replayed (`at` is then None)
    basis: str  #: what accrues in the search, or why it is not modelled
    interest_per_day: int | None  #: debt value growth over the next day, in the position's base units
    apy: dict[tuple[str, str], str] = field(default_factory=dict)  #: ("collateral"|"debt", asset) -> APY fraction


@dataclass(frozen=True, slots=True)
class _Model:
    """How one simulator class moves with time."""

    basis: str
    debt_value: Callable[[Any], int] | None  #: the debt in base units, as the protocol values it
    apy: Callable[[Position, Any], dict[tuple[str, str], str]] | None = None
    prepare: Callable[[Any], Any] | None = None  #: a cheaper copy for many `at_time` calls
    refuse: Callable[[Position, Any], str | None] | None = None  #: a reason this one position is not modelled
    #: a search of its own (sim, start, horizon) -> first liquidatable second: a path with a turning point, or solved
    search: Callable[[Any, int, int], int | None] | None = None


def verdict(sim: Simulator) -> bool:
    """The protocol's own liquidation verdict on a simulator (the predicate its adapter uses)."""
    liquidatable = getattr(sim, "liquidatable", None)
    if callable(liquidatable):
        return bool(liquidatable())
    healthy = getattr(sim, "healthy", None)
    if callable(healthy):
        return not healthy()
    h = sim.health()
    return h is not None and h < WAD


def first_liquidatable(sim: Simulator, start: int, horizon: int = DEFAULT_HORIZON) -> int | None:
    """The least second in [start, start + horizon] at which `verdict` holds; None if it holds at none.

    Gallops from a guess (secant steps on log health) and bisects; monotone in time by the argument
    in the module docstring, and the second found is checked with the one before it.
    """
    end = start + horizon

    def liq(t: int) -> bool:
        return verdict(sim.at_time(t))

    if liq(start):
        return start
    guess = _guess(sim, start, end)
    t = least_true(liq, guess, start, end)
    if t is None:
        return None
    # The search's own last two evaluations bracket t; this re-asks the protocol's check, independently of them.
    if not liq(t) or liq(t - 1):
        raise AssertionError(f"time search is not at a boundary at {t}")
    return t


def _guess(sim: Simulator, start: int, end: int) -> int:
    """Where health reaches 1, by a few secant steps on log(health): only a starting point for the exact search."""
    ta, tb = start, start + DAY
    ha, hb = sim.at_time(ta).health(), sim.at_time(tb).health()
    if ha is None or hb is None or hb >= ha or ha <= 0 or hb <= 0:
        return end  # not falling over the first day (or no debt): search from the horizon backwards
    la, lb = math.log(ha / WAD), math.log(hb / WAD)
    for _ in range(4):
        if la == lb:
            break
        t = tb - lb * (tb - ta) / (lb - la)
        if not start < t < end:
            return end if t >= end else start + 1
        h = sim.at_time(int(t)).health()
        if h is None or h <= 0:
            break
        ta, la, tb, lb = tb, lb, int(t), math.log(h / WAD)
        if abs(lb) < 1e-12 or ta == tb:
            break
    return min(max(tb, start + 1), end)


def _apy_per_second(rate: int, scale: int) -> str:
    """(1 + rate/scale)^YEAR - 1: a per-second rate compounded over a year, as a decimal fraction."""
    with localcontext() as ctx:
        ctx.prec = 40
        return _fmt((1 + Decimal(rate) / scale) ** YEAR - 1)


def _fmt(x: Decimal) -> str:
    return f"{x.quantize(Decimal('1e-8')).normalize():f}"


# --- per protocol: what accrues, the debt's value, the rates each leg pays or earns


def _aave_prepare(sim: Any) -> Any:
    """Only the user's reserves, and a row cache of its own: probes at many times must not fill the check's."""
    m = sim.market
    used, cfg, i = {}, sim.config, 0
    while cfg:
        if cfg & 3 and i in m.reserves_by_id:
            used[i] = m.reserves_by_id[i]
        cfg >>= 2
        i += 1
    return replace(sim, market=replace(m, reserves_by_id=used, _rows={}))


def _aave_refuse(p: Position, sim: Any) -> str | None:
    if any(sim.stable_debt.values()):
        return "not modelled: stable-rate debt's own accrual is not replayed"
    return None


def _aave_apy(p: Position, sim: Any) -> dict[tuple[str, str], str]:
    by_asset = {r.asset: r for r in sim.market.reserves_by_id.values()}
    out = {}
    for side, legs, attr in (("collateral", p.collateral, "liquidity_rate"), ("debt", p.debt, "borrow_rate")):
        for leg in legs:
            r = by_asset.get(leg.asset)
            if r is not None:
                # Aave's rates are APRs in ray; the APY compounds them per second, as Aave's own UI shows them
                out[(side, leg.asset)] = _apy_per_second(getattr(r, attr), RAY * YEAR)
    return out


def _comet_apy(p: Position, sim: Any) -> dict[tuple[str, str], str]:
    from watcher.adapters.compound_v3 import utilization

    u = utilization(sim.base_supply_index, sim.base_borrow_index, sim.total_supply_base, sim.total_borrow_base)
    out = {("collateral", leg.asset): "0" for leg in p.collateral}  # Comet pays no interest on collateral
    for leg in p.debt:
        out[("debt", leg.asset)] = _apy_per_second(sim.rates.borrow_rate(u), WAD)
    return out


def _morpho_apy(p: Position, sim: Any) -> dict[tuple[str, str], str]:
    out = {("collateral", leg.asset): "0" for leg in p.collateral}  # Morpho collateral earns nothing
    for leg in p.debt:
        out[("debt", leg.asset)] = _apy_per_second(sim.market.borrow_rate, WAD)
    return out


def _maker_apy(p: Position, sim: Any) -> dict[tuple[str, str], str]:
    out = {("collateral", leg.asset): "0" for leg in p.collateral}
    for leg in p.debt:
        out[("debt", leg.asset)] = _apy_per_second(sim.base + sim.duty - RAY, RAY)
    return out


def _liquity_v2_apy(p: Position, sim: Any) -> dict[tuple[str, str], str]:
    rate = p.details.get("annual_interest_rate")
    fee = p.details.get("annual_management_fee")
    out = {("collateral", leg.asset): "0" for leg in p.collateral}
    if isinstance(rate, int):
        # simple interest (and a batch's management fee) on the recorded debt until the trove or its batch is
        # touched: the annual rates are its yearly growth
        total = rate + (fee if isinstance(fee, int) else 0)
        out |= {("debt", leg.asset): _fmt(Decimal(total) / WAD) for leg in p.debt}
    return out


def _liquity_v2_refuse(p: Position, sim: Any) -> str | None:
    if (p.details.get("accrued_batch_fee") or p.details.get("interest_batch_manager")) and sim.batch is None:
        # the fee makes the debt grow faster than the time found would say: no time rather than a late one
        return "not modelled: the trove's batch management fee accrues and its batch's data does not give its debt"
    return None


def _maker_debt(sim: Any) -> int:
    return -(-sim.tab() * sim.par // (RAY * RAY))


MODELS: dict[str, _Model] = {
    "AaveSimulator": _Model(
        "variable debt compounds and collateral earns per second at the rates read (the Pool's indexes)",
        lambda s: s.account()[1],
        _aave_apy,
        _aave_prepare,
        _aave_refuse,
    ),
    "CometSimulator": _Model(
        "one accrual from lastAccrualTime at the read utilization's kinked rate, as absorb sees it",
        lambda s: s.debt_value(),
        _comet_apy,
    ),
    "MorphoSimulator": _Model(
        "one _accrueInterest at the IRM's rate for the stored market (an adaptive IRM moves its rate over time)",
        lambda s: s.borrowed(),
        _morpho_apy,
    ),
    "MakerSimulator": _Model("Jug.drip at base + duty from rho", _maker_debt, _maker_apy),
    "LiquityV2Simulator": _Model(
        "the trove's annual interest on its recorded debt; in an interest batch, its share of the batch's interest and "
        "management fee, each floored as getLatestTroveData floors it",
        lambda s: s.debt,
        _liquity_v2_apy,
        refuse=_liquity_v2_refuse,
    ),
    "LiquityV1Simulator": _Model("Liquity v1 charges no interest: nothing drifts", lambda s: s.debt),
    # each margin group loses the same funding every hour at constant marks and rates: a one-way path
    "HyperliquidSimulator": _Model(
        "Hyperliquid funding charged on the hour at the rates read, on the oracle price (marks held)",
        None,
        refuse=lambda p, s: (
            f"not modelled: the venue served no funding rate for {', '.join(s.unknown_funding())}"
            if s.unknown_funding()
            else None
        ),
        search=lambda s, start, horizon: s.liquidation_time(start, horizon),
    ),
    # dYdX v4: funding at each hourly tick (watcher/adapters/dydx_v4/simulator.py); per day: the funding paid
    "DydxSubaccountSim": _Model(
        "dYdX v4 funding settled at each hourly tick at the served nextFundingRate, oracle prices held",
        lambda s: s.funding_paid(),
        refuse=lambda p, s: s.not_modelled(),
    ),
    # perps: "interest per day" is what the positions pay over the day (fees; Synthetix: interest minus funding)
    "GmxAccountSim": _Model(perps.GMX_BASIS, perps.gmx_fees_usd, refuse=perps.gmx_refuse),
    "SynthetixAccountSimulator": _Model(perps.SYNTHETIX_BASIS, perps.synthetix_costs, search=perps.synthetix_search),
}


def forecast(position: Position, horizon: int = DEFAULT_HORIZON) -> Forecast:
    """Time to liquidation at constant prices, interest per day and per-leg APY of one position."""
    start = position.block.timestamp
    sim = position.simulator
    name = type(sim).__name__
    model = MODELS.get(name)
    if sim is None or model is None:
        return Forecast(None, horizon, start, False, "not modelled: the venue's funding is not projected", None)
    apy = model.apy(position, sim) if model.apy else {}
    refused = model.refuse(position, sim) if model.refuse else None
    if refused:
        return Forecast(None, horizon, start, False, refused, None, apy)
    if model.prepare:
        sim = model.prepare(sim)
    per_day = None
    if model.debt_value is not None:
        per_day = model.debt_value(sim.at_time(start + DAY)) - model.debt_value(sim.at_time(start))
    search = model.search or first_liquidatable
    at = search(sim, start, horizon) if position.has_debt or position.perps else None
    return Forecast(at, horizon, start, True, model.basis, per_day, apy)
