"""Liquidation probability over a horizon, from the realised volatility of the prices the protocol reads.

The model, stated wherever a probability is shown:
- each asset's log price is a Brownian motion without drift (a driftless geometric Brownian motion in log space), with
  the annualised volatility realised in its price history; several assets move together with the correlation of their
  returns on a common grid;
- a position is liquidated the first time its health reaches 1 within the horizon (first passage of a barrier),
  watched continuously;
- health moves with prices as the protocol values the legs: collateral value times its liquidation weight over debt
  value, scaled so that it starts at the health the protocol itself computed (rounding, interest and caps are not
  re-modelled along a path);
- what it leaves out: drift, jumps and fat tails (crashes are more likely than a Brownian motion says), volatility
  that changes over time, oracle mechanics (heartbeats, deviation thresholds, Maker's one-hour delay), and interest
  accruing during the horizon. It is an estimate of risk from recent history, not a forecast.

Where one quantity drives the position (one moving asset, or one collateral asset against one debt asset, whose price
ratio is then the driver), the first passage has a closed form: P = 2 * Phi(-d / (sigma * sqrt(T))), d the log
distance to the boundary. With several moving assets the same closed form is applied to health itself, at the
volatility its legs give it (each asset's collateral share minus its debt share, through the correlations): exact for
one factor, an approximation that holds the shares as they are now otherwise, and errs high: as one collateral
falls its share shrinks, which the fixed shares ignore (two collaterals over 7 days in the tests: 0.017 against the
Monte Carlo's 0.011). A Monte Carlo over correlated paths, with
a Brownian-bridge correction between steps (`model="monte_carlo"`), is what the tests check that approximation against;
it costs about a second a position, the closed form microseconds.

Perpetual positions (GMX, Synthetix) have no collateral/debt boundary but a liquidation price per perp leg: with every
leg on one asset that asset's price is the one driver, and the same closed form applies at d = |ln(liquidation price /
mark)|, the nearest leg's; perps on several assets take the nearest point of their margin pools' boundary in the
prices' covariance (watcher/perp_probability.py).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from watcher.model import BPS, WAD, Position

YEAR = 365 * 86400  #: seconds in the year that annualises a volatility
DEFAULT_HORIZONS = (3600, 86400, 7 * 86400)  #: 1 h, 24 h and 7 d
MIN_RETURNS = 20  #: fewer returns than this give no estimate: a sigma from a handful of points is noise
CLOSED_FORM = "driftless GBM, first passage of the liquidation boundary (closed form)"
HEALTH_CLOSED_FORM = (
    "driftless correlated GBM, first passage of health 1 at health's volatility from its legs' shares (closed form)"
)
MONTE_CARLO = "driftless correlated GBM, first passage of health 1 (Monte Carlo, {paths} paths x {steps} steps)"

#: (timestamp, price) pairs, oldest first; prices in any fixed unit (the feed's own integers)
History = Sequence[tuple[int, int | float]]


@dataclass(frozen=True, slots=True)
class Volatility:
    """The realised volatility of a price series."""

    sigma_annual: float  #: annualised standard deviation of log returns
    samples: int  #: log returns it was estimated from
    span_s: int  #: seconds between the first and the last price

    @property
    def standard_error(self) -> float:
        """The sampling error of sigma_annual: sigma / sqrt(2 n) for n returns of a Brownian motion."""
        return self.sigma_annual / math.sqrt(2 * self.samples)


@dataclass(frozen=True, slots=True)
class Estimate:
    """The probability of liquidation within a horizon, with what it rests on; None where it cannot be estimated."""

    horizon_s: int
    probability: float | None
    #: of the driving quantity: the price or ratio, or health itself with several assets (in a Monte Carlo, and for
    #: perps on several assets, the largest of the assets')
    sigma_annual: float | None
    samples: int  #: log returns behind the sigma (the fewest of the assets)
    model: str
    note: str = ""
    #: (asset symbol or market, where its history came from: a feed address or "fixed at ..."), so a user can check it
    feeds: tuple[tuple[str, str], ...] = ()

    def as_json(self) -> dict[str, object]:
        """The JSON form: `{horizon_s, probability, sigma_annual, samples, model}`, a note and feeds where there are."""
        doc: dict[str, object] = {
            "horizon_s": self.horizon_s,
            "probability": self.probability,
            "sigma_annual": self.sigma_annual,
            "samples": self.samples,
            "model": self.model,
        }
        if self.note:
            doc["note"] = self.note
        if self.feeds:
            doc["feeds"] = dict(self.feeds)
        return doc


def realised_volatility(history: History) -> Volatility | None:
    """Annualised volatility of the log returns of `history`; None with fewer than MIN_RETURNS returns.

    The maximum-likelihood estimate for a driftless Brownian motion sampled at uneven times: the sum of squared log
    returns over the time they span. Oracle rounds arrive unevenly (a heartbeat, or a deviation that triggered an
    update), so weighting every return alike would overstate the volatility of quiet periods.
    """
    points = [(t, p) for t, p in history if p > 0]
    squares, elapsed, n = 0.0, 0, 0
    for (t0, p0), (t1, p1) in itertools.pairwise(points):
        if t1 <= t0:
            continue  # a repeated timestamp carries no time to spread a return over
        r = math.log(p1 / p0)
        squares += r * r
        elapsed += t1 - t0
        n += 1
    if n < MIN_RETURNS or elapsed <= 0:
        return None
    return Volatility(math.sqrt(squares / elapsed * YEAR), n, points[-1][0] - points[0][0])


def first_passage(distance: float, sigma_annual: float, horizon_s: float) -> float:
    """P(a driftless Brownian log price moves `distance` (log units, either way) within `horizon_s`)."""
    if distance <= 0:
        return 1.0
    if sigma_annual <= 0 or horizon_s <= 0:
        return 0.0
    scale = sigma_annual * math.sqrt(horizon_s / YEAR)
    # reflection principle: the running minimum passes -d with twice the probability the end point does
    return min(1.0, math.erfc(distance / (scale * math.sqrt(2.0))))


def ratio_history(numerator: History, denominator: History) -> list[tuple[int, float]]:
    """The price ratio at every time either series moved, each held at its last value (from when both exist)."""
    events = sorted({t for t, _ in numerator} | {t for t, _ in denominator})
    a, b = sorted(numerator), sorted(denominator)
    i = j = 0
    last_a = last_b = None
    out: list[tuple[int, float]] = []
    for t in events:
        while i < len(a) and a[i][0] <= t:
            last_a = a[i][1]
            i += 1
        while j < len(b) and b[j][0] <= t:
            last_b = b[j][1]
            j += 1
        if last_a and last_b:
            out.append((t, last_a / last_b))
    return out


def _grid_returns(histories: Sequence[History], step_s: int) -> list[list[float]]:
    """Log returns of each series on one regular grid over their common span, each held at its last value."""
    start = max(h[0][0] for h in histories)
    end = min(h[-1][0] for h in histories)
    grid = range(start, end + 1, step_s)
    out = []
    for h in histories:
        values, k, last = [], 0, h[0][1]
        for t in grid:
            while k < len(h) and h[k][0] <= t:
                last = h[k][1]
                k += 1
            values.append(math.log(last))
        out.append([y - x for x, y in itertools.pairwise(values)])
    return out


def correlation(histories: Sequence[History], step_s: int = 3600) -> list[list[float]]:
    """The correlation matrix of the series' log returns on a common grid of `step_s` seconds."""
    returns = _grid_returns(histories, step_s)
    n = len(returns)
    var = [sum(r * r for r in rs) for rs in returns]
    out = [[1.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            cov = sum(x * y for x, y in zip(returns[i], returns[j], strict=True))
            rho = cov / math.sqrt(var[i] * var[j]) if var[i] > 0 and var[j] > 0 else 0.0
            out[i][j] = out[j][i] = max(-1.0, min(1.0, rho))
    return out


def cholesky(m: list[list[float]]) -> list[list[float]]:
    """The lower-triangular L with L L' = m, for drawing correlated normals."""
    n = len(m)
    low = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            s = m[i][j] - sum(low[i][k] * low[j][k] for k in range(j))
            # a correlation estimated from finite samples can be a hair short of positive definite
            low[i][j] = math.sqrt(max(s, 0.0)) if i == j else (s / low[j][j] if low[j][j] > 1e-12 else 0.0)
    return low


@dataclass(frozen=True, slots=True)
class _Weights:
    """How health moves with each asset's price: collateral value x weight, and debt value, per asset."""

    collateral: dict[str, float]
    debt: dict[str, float]


def _weights(p: Position) -> _Weights:
    coll: dict[str, float] = {}
    debt: dict[str, float] = {}
    for leg in p.collateral:
        if leg.value and leg.weight_bps:
            coll[leg.asset] = coll.get(leg.asset, 0.0) + leg.value * leg.weight_bps / BPS
    for leg in p.debt:
        if leg.value:
            debt[leg.asset] = debt.get(leg.asset, 0.0) + float(leg.value)
    return _Weights(coll, debt)


def monte_carlo(
    p: Position,
    vols: Mapping[str, float],
    corr: list[list[float]],
    horizon_s: float,
    *,
    paths: int = 2000,
    steps: int = 24,
    seed: int = 0,
) -> tuple[float, float]:
    """(probability, its standard error) that health reaches 1 within the horizon, over correlated price paths.

    `vols` are annualised sigmas by asset address, in the order of `corr`'s rows. Between steps the crossing is
    corrected with a Brownian bridge on log health (exact for one factor, an approximation for several).
    """
    w = _weights(p)
    assets = list(vols)
    h0 = (p.health or 0) / WAD
    if h0 <= 1:
        return 1.0, 0.0
    low = cholesky(corr)
    dt = horizon_s / YEAR / steps
    scale = [vols[a] * math.sqrt(dt) for a in assets]
    coll0, debt0 = sum(w.collateral.values()), sum(w.debt.values())
    rng = random.Random(seed)
    hits = 0.0
    for _ in range(paths):
        x = [0.0] * len(assets)
        prev = math.log(h0)
        survive = 1.0
        for _ in range(steps):
            z = [rng.gauss(0.0, 1.0) for _ in assets]
            for i in range(len(assets)):
                x[i] += scale[i] * sum(low[i][k] * z[k] for k in range(i + 1))
            moved = dict(zip(assets, x, strict=True))
            coll = sum(v * math.exp(moved.get(a, 0.0)) for a, v in w.collateral.items()) / coll0
            debt = sum(v * math.exp(moved.get(a, 0.0)) for a, v in w.debt.items()) / debt0
            now = math.log(h0 * coll / debt)
            if now <= 0:
                survive = 0.0
                break
            # the chance the path dipped below 1 and came back within the step (bridge on log health)
            var = _log_health_var(w, moved, vols, corr, assets, dt)
            if var > 0:
                survive *= 1.0 - math.exp(-2.0 * prev * now / var)
            prev = now
        hits += 1.0 - survive
    prob = hits / paths
    return prob, math.sqrt(max(prob * (1 - prob), 0.0) / paths)


def _log_health_var(
    w: _Weights,
    moved: Mapping[str, float],
    vols: Mapping[str, float],
    corr: list[list[float]],
    assets: list[str],
    dt: float,
) -> float:
    """The variance of log health over one step: its sensitivity to each log price, through the correlations."""
    cs = sum(v * math.exp(moved.get(a, 0.0)) for a, v in w.collateral.items())
    ds = sum(v * math.exp(moved.get(a, 0.0)) for a, v in w.debt.items())
    sens = []
    for a in assets:
        c = w.collateral.get(a, 0.0) * math.exp(moved.get(a, 0.0)) / cs if cs else 0.0
        d = w.debt.get(a, 0.0) * math.exp(moved.get(a, 0.0)) / ds if ds else 0.0
        sens.append((c - d) * vols[a])
    return dt * sum(sens[i] * sens[j] * corr[i][j] for i in range(len(assets)) for j in range(len(assets)))


def liquidation_probability(
    p: Position,
    histories: Mapping[str, History],
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    *,
    paths: int = 2000,
    seed: int = 0,
    model: str = "closed",
    cache: dict[tuple[str, ...], Any] | None = None,
) -> list[Estimate]:
    """The probability of liquidation of `p` within each horizon, from the price histories of its assets.

    `histories` holds, by token address, the prices of the oracle the protocol reads. A position without debt reads
    0; one the protocol already calls liquidatable reads 1; a leg without enough history gives no estimate, and says
    which asset it lacks. Perp legs are keyed in `histories` by `perp_driver(leg)` (watcher/perp_probability.py).
    `cache`, kept for one set of histories, shares the volatilities and correlations among positions on the same assets.
    """

    def each(prob: float | None, sigma: float | None, samples: int, kind: str, note: str = "") -> list[Estimate]:
        return [Estimate(h, prob, sigma, samples, kind, note) for h in horizons]

    memo: dict[tuple[str, ...], Any] = cache if cache is not None else {}
    if p.perps:
        from watcher.perp_probability import perp_probability  # it builds on this module's closed form

        return perp_probability(p, histories, horizons, memo)
    if not p.has_debt or p.health is None:
        return each(0.0, None, 0, "no debt")
    if p.liquidatable or p.health <= WAD:
        return each(1.0, None, 0, "already liquidatable")
    w = _weights(p)
    assets = sorted(set(w.collateral) | set(w.debt))

    def vol_of(key: tuple[str, ...], series: Callable[[], History]) -> Volatility | None:
        # positions holding the same assets share one estimate per call: 500 logarithms each are not free
        if key not in memo:
            memo[key] = realised_volatility(series())
        return memo[key]

    vols: dict[str, Volatility] = {}
    for a in assets:
        v = vol_of(("vol", a), lambda a=a: histories.get(a, ()))  # type: ignore[misc]
        if v is None:
            symbol = next((leg.symbol for leg in (*p.collateral, *p.debt) if leg.asset == a), a)
            return each(None, None, 0, "none", f"not enough price history for {symbol} (at least {MIN_RETURNS} rounds)")
        vols[a] = v
    distance = math.log(p.health / WAD)  # health is proportional to the driver, so it moves by this in log terms
    pair = _one_driver(w)
    if pair is not None:
        c, d = pair
        if c == d:  # one asset on both sides: its price cancels out of health, whatever it does
            return each(0.0, None, vols[c].samples, "prices cancel out (the same asset is collateral and debt)")
        vol = vol_of(("ratio", c, d), lambda: ratio_history(histories[c], histories[d]))
        if vol is None:
            return each(None, None, 0, "none", "not enough history of the price ratio")
        return [
            Estimate(h, first_passage(distance, vol.sigma_annual, h), vol.sigma_annual, vol.samples, CLOSED_FORM)
            for h in horizons
        ]
    key = ("corr", *assets)
    if key not in memo:
        memo[key] = correlation([histories[a] for a in assets])
    corr = memo[key]
    sigmas = {a: vols[a].sigma_annual for a in assets}
    samples = min(v.samples for v in vols.values())
    if model == "monte_carlo":
        steps = 24
        return [
            Estimate(
                h,
                monte_carlo(p, sigmas, corr, h, paths=paths, steps=steps, seed=seed)[0],
                max(sigmas.values()),
                samples,
                MONTE_CARLO.format(paths=paths, steps=steps),
            )
            for h in horizons
        ]
    # Health's own volatility: its sensitivity to each log price (collateral share minus debt share, by value),
    # through the correlations. Exact for one factor; with several it holds the shares as they are now.
    sigma_h = math.sqrt(max(_log_health_var(w, {}, sigmas, corr, assets, 1.0), 0.0))
    return [Estimate(h, first_passage(distance, sigma_h, h), sigma_h, samples, HEALTH_CLOSED_FORM) for h in horizons]


def _one_driver(w: _Weights) -> tuple[str, str] | None:
    """The collateral and debt asset whose price ratio health is proportional to, where there is one of each."""
    if len(w.collateral) == 1 and len(w.debt) == 1:
        return next(iter(w.collateral)), next(iter(w.debt))
    return None


__all__ = [
    "CLOSED_FORM",
    "DEFAULT_HORIZONS",
    "Estimate",
    "Volatility",
    "correlation",
    "first_passage",
    "liquidation_probability",
    "monte_carlo",
    "ratio_history",
    "realised_volatility",
]
