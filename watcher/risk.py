"""Liquidation prices and the top-up or repayment that restores a target health, solved on the exact simulator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from watcher.alerts import classify
from watcher.model import BPS, WAD, Leg, Level, Position, Simulator


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Health thresholds, in WAD."""

    warn: int
    critical: int
    target: int


@dataclass(frozen=True, slots=True)
class LiquidationPrice:
    """The oracle price of one asset at which the position becomes liquidatable, all else fixed."""

    asset: str
    symbol: str
    current: int  #: current oracle price (base-currency units per whole token)
    price: int  #: the liquidation price: the protocol says liquidatable here, and not one unit on the safe side
    falling: bool  #: True when the price must fall to liquidate (collateral), False when it must rise (debt)

    @property
    def move_ppm(self) -> int:
        """Signed move from the current price to the liquidation price, in parts per million."""
        return (self.price - self.current) * 1_000_000 // self.current if self.current else 0


@dataclass(frozen=True, slots=True)
class Action:
    """Supply collateral or repay debt, in token base units, and the health it leads to."""

    kind: str  #: "supply" or "repay"
    asset: str
    symbol: str
    decimals: int
    amount: int  #: the least amount (base units) that reaches the target; the whole balance when infeasible
    value: int  #: amount valued at the current oracle price, base-currency units
    health_after: int | None  #: exact health after the action (WAD); None when no debt is left
    feasible: bool  #: False when even `amount` (all of that debt) does not reach the target


@dataclass(frozen=True, slots=True)
class Advice:
    """What would liquidate the position, and what restores the target health."""

    target: int
    liquidation_prices: tuple[LiquidationPrice, ...]
    top_ups: tuple[Action, ...]
    repayments: tuple[Action, ...]


def level_of(position: Position, thresholds: Thresholds) -> Level:
    """Classify a position against thresholds; the protocol's own verdict decides liquidatable."""
    return classify(position.health, position.liquidatable, thresholds.warn, thresholds.critical)


def _at_least(h: int | None, target: int) -> bool:
    return h is None or h >= target


def least_true(pred: Callable[[int], bool], guess: int, lo: int, hi: int) -> int | None:
    """Smallest x in [lo, hi] with pred(x), for pred monotone False->True; None if pred(hi) is False.

    Gallops from a guess, then bisects: a good guess costs a handful of evaluations.
    """
    guess = min(max(guess, lo), hi)
    if pred(guess):
        true_at, step = guess, 1
        while True:
            probe = true_at - step
            if probe < lo:
                false_at = lo - 1
                break
            if not pred(probe):
                false_at = probe
                break
            true_at, step = probe, step * 2
    else:
        false_at, step = guess, 1
        while True:
            probe = false_at + step
            if probe >= hi:
                if not pred(hi):
                    return None
                true_at = hi
                break
            if pred(probe):
                true_at = probe
                break
            false_at, step = probe, step * 2
    while true_at - false_at > 1:
        mid = (true_at + false_at) // 2
        if pred(mid):
            true_at = mid
        else:
            false_at = mid
    return true_at


def _inv(h: int | None) -> int:
    """WAD^2 / health: linear in a debt price, 0 when there is no debt."""
    return 0 if h is None else WAD * WAD // max(h, 1)


def liquidation_price(sim: Simulator, leg: Leg) -> LiquidationPrice | None:
    """The price of `leg`'s asset at which the protocol's check turns liquidatable, or None if none exists."""
    p0 = leg.price
    if p0 <= 0:
        return None

    def hf(p: int) -> int | None:
        return sim.with_price(leg.asset, p).health()

    h_now, h_up = hf(p0), hf(p0 * 2)
    hi = p0 << 64
    if _inv(h_up) < _inv(h_now):
        # Health rises with the price: the price must fall. Boundary b = least price that is safe.
        h_zero = hf(0)
        if _at_least(h_zero, WAD):
            return None
        # Health is linear in a collateral price: a secant through price 0 and now guesses the boundary.
        hz = 0 if h_zero is None else h_zero
        hn = WAD * WAD if h_now is None else h_now
        guess = (WAD - hz) * p0 // (hn - hz) if hn != hz else p0
        b = least_true(lambda p: _at_least(hf(p), WAD), guess + 1, 0, hi)
        if b is None or b == 0:
            return None
        return LiquidationPrice(leg.asset, leg.symbol, p0, b - 1, True)
    if _inv(h_up) > _inv(h_now):
        # Health falls as the price rises (a debt asset); 1/health is linear in it, so the secant is on that.
        i0, i1 = _inv(hf(0)), _inv(h_now)
        guess = (WAD - i0) * p0 // (i1 - i0) if i1 != i0 else p0
        b = least_true(lambda p: not _at_least(hf(p), WAD), guess, 0, hi)
        if b is None:
            return None
        return LiquidationPrice(leg.asset, leg.symbol, p0, b, False)
    return None


def _value_at(leg: Leg, amount: int) -> int:
    return amount * leg.price // 10**leg.decimals


def top_up(position: Position, sim: Simulator, leg: Leg, target: int) -> Action | None:
    """The least amount of collateral `leg` to supply so that health >= target; None if already there."""
    if _at_least(sim.health(), target) or leg.weight_bps == 0 or leg.price == 0:
        return None
    weighted = sum(c.value * c.weight_bps for c in position.collateral) // BPS
    deficit = max(target * position.total_debt // WAD - weighted, 1)
    unit = 10**leg.decimals
    guess = deficit * BPS * unit // (leg.weight_bps * leg.price) + 1
    amount = least_true(lambda x: _at_least(sim.with_supply(leg.asset, x).health(), target), guess, 1, guess << 64)
    if amount is None:
        return None
    after = sim.with_supply(leg.asset, amount).health()
    return Action("supply", leg.asset, leg.symbol, leg.decimals, amount, _value_at(leg, amount), after, True)


def repayment(position: Position, sim: Simulator, leg: Leg, target: int) -> Action | None:
    """The least amount of debt `leg` to repay so that health >= target; None if already there."""
    if _at_least(sim.health(), target) or leg.amount == 0:
        return None
    full = sim.with_repay(leg.asset, leg.amount).health()
    if not _at_least(full, target):
        return Action("repay", leg.asset, leg.symbol, leg.decimals, leg.amount, leg.value, full, False)
    weighted = sum(c.value * c.weight_bps for c in position.collateral) // BPS
    excess = max(position.total_debt - weighted * WAD // target, 1)
    guess = excess * 10**leg.decimals // max(leg.price, 1) + 1
    amount = least_true(lambda y: _at_least(sim.with_repay(leg.asset, y).health(), target), guess, 1, leg.amount)
    assert amount is not None  # the full balance reaches the target, checked above
    after = sim.with_repay(leg.asset, amount).health()
    return Action("repay", leg.asset, leg.symbol, leg.decimals, amount, _value_at(leg, amount), after, True)


def advise(position: Position, target: int, at: int | None = None) -> Advice:
    """Liquidation price per asset and the top-ups and repayments that restore `target` health.

    `at` evaluates the advice with interest accrued to that timestamp (default: the read block), so that
    an action sent in a later block still reaches the target.
    """
    sim = position.simulator
    if sim is None:
        return Advice(target, (), (), ())
    if at is not None:
        sim = sim.at_time(at)
    prices: list[LiquidationPrice] = []
    seen: set[str] = set()
    if position.has_debt:
        for leg in (*position.collateral, *position.debt):
            if leg.asset in seen:
                continue
            seen.add(leg.asset)
            lp = liquidation_price(sim, leg)
            if lp is not None:
                prices.append(lp)
    ups = tuple(a for leg in position.collateral if (a := top_up(position, sim, leg, target)) is not None)
    repays = tuple(a for leg in position.debt if (a := repayment(position, sim, leg, target)) is not None)
    return Advice(target, tuple(prices), ups, repays)


@dataclass(frozen=True, slots=True)
class MarginTopUp:
    """Collateral to add to one margin group of a perp account (the cross group, or one isolated position)."""

    scope: str  #: "cross", or the market of an isolated position
    amount: int  #: base units of the position's base currency, rounded up
    health_after: int  #: equity over requirement after the top-up, WAD


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def perp_top_ups(position: Position, target: int) -> tuple[MarginTopUp, ...]:
    """The least collateral that lifts each perp margin group to `target` (requirement held at the current size)."""
    groups: list[tuple[str, int, int]] = []
    cross = [leg for leg in position.perps if leg.margin_mode == "cross"]
    if cross and position.cross_equity is not None:
        groups.append(("cross", position.cross_equity, sum(leg.requirement for leg in cross)))
    groups += [
        (leg.market, leg.equity, leg.requirement)
        for leg in position.perps
        if leg.margin_mode == "isolated" and leg.equity is not None
    ]
    out = []
    for scope, equity, req in groups:
        need = _ceil_div(target * req, WAD) - equity
        if req > 0 and need > 0:
            out.append(MarginTopUp(scope, need, (equity + need) * WAD // req))
    return tuple(out)
