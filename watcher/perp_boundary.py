"""Perps on several assets: the margin pools' boundary in log prices, its nearest points, and the chance of reaching
any of them (watcher/perp_probability.py states the model; the tests hold it against `perp_monte_carlo`).

A pool (the cross legs together, or one isolated leg) is liquidated where 1 + sum_d g_d (exp(x_d) - 1) <= 0, x_d the
log move of driver d and g_d its slope. In whitened coordinates z (x = L z, L L' = the prices' annual covariance) a
Brownian motion of the log prices is a standard one, so the chance of reaching a flat boundary at distance beta
within T years is 2 Phi(-beta / sqrt(T)), whatever its direction. The boundary curves: its nearest point is found
by the Hasofer-Lind-Rackwitz-Fiessler iteration from today's prices with a merit line search (plain HL-RF oscillates
on hedges), polished by Newton's method; unless the pool holds only longs (then the nearest point is the only one),
rays in a spread of directions find the other basins, each walked down the boundary to its minimum. A point is kept
only where the second-order condition says it is a minimum, not a saddle or a farthest point. Several nearest
points (two shorts on anti-correlated coins, several pools) are combined by Ditlevsen's upper bound, each pair's
joint chance taken as twice the terminal one of two half-spaces (exact for one point, and for two in the same
direction).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from watcher.model import PerpLeg
from watcher.probability import YEAR, cholesky, first_passage


@dataclass(frozen=True, slots=True)
class Pool:
    """One margin pool: where 1 + sum over drivers of slope * (exp(x) - 1) reaches 0, the pool is liquidated."""

    name: str  #: "cross", or the isolated leg's market
    slopes: dict[str, float]  #: by driver, the sum of its legs' slopes

    def excess(self, moves: Mapping[str, float]) -> float:
        """The pool's margin excess after the log moves, as a fraction of today's (0 at the boundary)."""
        return 1.0 + sum(g * math.expm1(moves.get(d, 0.0)) for d, g in self.slopes.items())

    def reachable(self) -> bool:
        """Whether any prices liquidate it: a short's excess falls without end, longs' only by their sum."""
        return any(g < 0 for g in self.slopes.values()) or sum(self.slopes.values()) > 1.0


def _signed_value(leg: PerpLeg) -> int:
    """What the excess gains per unit log move of the leg's price: signed notional less the requirement."""
    return (leg.notional if leg.size > 0 else -leg.notional) - leg.requirement


def margin_pools(legs: Sequence[PerpLeg], drivers: Mapping[int, str]) -> list[Pool] | str:
    """The reachable margin pools with each driver's slope (`drivers`: by leg index); a note where one cannot be
    weighed.

    A leg's slope is mark / (mark - liquidation price): its own liquidation price is where the excess reaches 0 on
    its price alone. A cross leg without one (its price alone never liquidates the account) is weighed by its signed
    notional less its requirement against the excess that the nearest cross leg with one implies. An isolated leg
    without one is a pool no price liquidates, and is left out."""
    cross: dict[str, float] = {}
    pools: list[Pool] = []
    unweighed: list[int] = []
    excess = None  # the cross pool's excess in base units, from its nearest leg with a liquidation price
    nearest = math.inf
    for i, leg in enumerate(legs):
        liq, mark = leg.liquidation_price, leg.mark_price
        if liq is None or liq <= 0 or mark <= 0 or liq == mark:
            if leg.margin_mode != "isolated":
                unweighed.append(i)
            continue
        g = float(mark / (mark - liq))
        if leg.margin_mode == "isolated":
            pools.append(Pool(leg.market, {drivers[i]: g}))
            continue
        cross[drivers[i]] = cross.get(drivers[i], 0.0) + g
        if abs(math.log(liq / mark)) < nearest:
            nearest = abs(math.log(liq / mark))
            excess = _signed_value(leg) / g
    for i in unweighed:
        if excess is None or excess <= 0:
            return f"{legs[i].market} has no liquidation price to weigh it by in the cross account"
        cross[drivers[i]] = cross.get(drivers[i], 0.0) + _signed_value(legs[i]) / excess
    if cross:
        pools.insert(0, Pool("cross", cross))
    return [pool for pool in pools if pool.reachable()]


@dataclass(frozen=True, slots=True)
class DesignPoint:
    """A nearest point of a pool's boundary: its distance in sigmas, and the boundary's normal there in log prices
    (by driver), which says how two points' first passages go together."""

    beta: float
    normal: dict[str, float]
    moves: dict[str, float]  #: the log price moves, by driver, that take today's prices to it

    def correlation(self, other: DesignPoint, cov: Mapping[tuple[str, str], float]) -> float:
        """The correlation of the two points' distances as prices move: n' C m / sqrt(n' C n m' C m)."""

        def inner(a: Mapping[str, float], b: Mapping[str, float]) -> float:
            return sum(x * y * cov[i, j] for i, x in a.items() for j, y in b.items())

        scale = math.sqrt(inner(self.normal, self.normal) * inner(other.normal, other.normal))
        return max(-1.0, min(1.0, inner(self.normal, other.normal) / scale)) if scale > 0 else 0.0


class _Whitened:
    """A pool's excess and its gradient in whitened coordinates z, x = L z."""

    def __init__(self, pool: Pool, names: Sequence[str], low: list[list[float]]) -> None:
        self.slopes = [pool.slopes.get(d, 0.0) for d in names]
        self.low = low
        self.n = len(names)

    def x(self, z: Sequence[float]) -> list[float]:
        # clamped: an iterate far out must not overflow exp; the boundary itself is never that far
        return [max(-50.0, min(50.0, sum(self.low[i][k] * z[k] for k in range(i + 1)))) for i in range(self.n)]

    def f(self, z: Sequence[float]) -> float:
        return 1.0 + sum(g * math.expm1(xi) for g, xi in zip(self.slopes, self.x(z), strict=True))

    def normal(self, z: Sequence[float], names: Sequence[str]) -> dict[str, float]:
        """The excess's gradient in log prices at z."""
        return {d: g * math.exp(xi) for d, g, xi in zip(names, self.slopes, self.x(z), strict=True)}

    def grad(self, z: Sequence[float]) -> list[float]:
        gx = [g * math.exp(xi) for g, xi in zip(self.slopes, self.x(z), strict=True)]
        return [sum(self.low[i][k] * gx[i] for i in range(k, self.n)) for k in range(self.n)]

    def hessian(self, z: Sequence[float]) -> list[list[float]]:
        """L' diag(g exp(x)) L: the excess is a sum of exponentials of the log prices."""
        h = [g * math.exp(xi) for g, xi in zip(self.slopes, self.x(z), strict=True)]
        return [
            [sum(self.low[i][a] * h[i] * self.low[i][b] for i in range(max(a, b), self.n)) for b in range(self.n)]
            for a in range(self.n)
        ]


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _stationary(w: _Whitened, z: Sequence[float]) -> bool:
    """On the boundary, with today's prices along its normal there."""
    gz = w.grad(z)
    n2, norm2 = _dot(gz, gz), _dot(z, z)
    if n2 <= 1e-300:
        return False
    along = _dot(z, gz) / math.sqrt(n2)
    return abs(w.f(z)) < 1e-10 and math.sqrt(max(norm2 - along * along, 0.0)) < 1e-7 * max(1.0, math.sqrt(norm2))


def _solve(w: _Whitened, start: Sequence[float]) -> list[float] | None:
    """The boundary point HL-RF heads to from `start` (each step shortened until a merit function falls), polished
    by Newton's method on the optimality conditions, which HL-RF approaches only slowly where the boundary curves."""
    z = list(start)
    for k in range(300):
        if k % 5 == 0 and (polished := _polish(w, z)) is not None:
            return polished
        fz, gz = w.f(z), w.grad(z)
        n2 = _dot(gz, gz)
        if n2 <= 1e-300:
            return None
        norm = math.sqrt(_dot(z, z))
        if _stationary(w, z):
            return z
        lam = (_dot(gz, z) - fz) / n2
        d = [lam * g - zi for g, zi in zip(gz, z, strict=True)]
        c = 2.0 * norm / math.sqrt(n2) + 10.0  # the penalty must exceed |z| / |grad f| for a descent
        merit0 = 0.5 * norm * norm + c * abs(fz)
        step = 1.0
        while True:
            cand = [zi + step * di for zi, di in zip(z, d, strict=True)]
            if 0.5 * _dot(cand, cand) + c * abs(w.f(cand)) < merit0 or step < 1e-8:
                break
            step *= 0.5
        z = cand
    return None


def _polish(w: _Whitened, z: Sequence[float]) -> list[float] | None:
    """Newton's point from `z`, where it is a minimum: Newton finds any stationary point, the farthest too."""
    polished = _newton(w, z)
    return polished if polished is not None and _is_minimum(w, polished) else None


def _newton(w: _Whitened, start: Sequence[float]) -> list[float] | None:
    """Newton's method on z + mu grad f = 0, f = 0 from `start`; the point where it converges, else None."""
    z = list(start)
    gz = w.grad(z)
    n2 = _dot(gz, gz)
    if n2 <= 1e-300:
        return None
    mu = -_dot(z, gz) / n2
    n = w.n
    for _ in range(30):
        fz, gz, hz = w.f(z), w.grad(z), w.hessian(z)
        rows = [[(1.0 if a == b else 0.0) + mu * hz[a][b] for b in range(n)] + [gz[a]] for a in range(n)]
        rows.append([*gz, 0.0])
        rhs = [-(z[a] + mu * gz[a]) for a in range(n)] + [-fz]
        step = _linear(rows, rhs)
        if step is None:
            return None
        z = [zi + di for zi, di in zip(z, step[:n], strict=True)]
        mu += step[n]
        if any(abs(zi) > 1e3 for zi in z):
            return None
        if _stationary(w, z):
            return z
    return None


def _linear(a: list[list[float]], b: list[float]) -> list[float] | None:
    """The solution of a x = b by Gaussian elimination with partial pivoting; None where a is singular."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-14:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            factor = m[r][col] / m[col][col]
            for c in range(col, n + 1):
                m[r][c] -= factor * m[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


def design_points(pool: Pool, names: Sequence[str], cov: Mapping[tuple[str, str], float]) -> list[DesignPoint] | None:
    """The pool boundary's nearest points (local minima of the distance), nearest first; None where none was found.

    HL-RF from today's prices finds the nearest point of most boundaries; rays in a spread of directions find the
    basins it does not reach (two shorts on coins moving apart have one each way), each walked down to its minimum."""
    low = cholesky([[cov[a, b] for b in names] for a in names])
    w = _Whitened(pool, names, low)
    found: list[list[float]] = []

    def add(z: list[float] | None) -> None:
        if z is not None and _is_minimum(w, z) and not any(_same(z, f) for f in found):
            found.append(z)

    first = _solve(w, [0.0] * w.n)
    if first is not None:
        add(first)
        if not _is_minimum(w, first):  # a farthest point between two nearest ones: walk off it each way
            for t in _tangents(w.grad(first)):
                for sign in (1.0, -1.0):
                    add(_walk(w, first, [sign * ti for ti in t]))
    if found and all(g > 0 for g in w.slopes):
        # longs only: where the pool fails is a convex set of log prices, and its nearest point is the one
        return _points(w, names, found)
    rays = [(r, d) for d in _directions(w.n) if (r := _ray(w, d)) < math.inf]
    if w.n == 2:  # around the circle: a ray nearer than both its neighbours starts a basin
        rays = [rays[k] for k in range(len(rays)) if rays[k][0] <= min(rays[k - 1][0], rays[(k + 1) % len(rays)][0])]
    for r, d in rays:
        if any(_dot(d, f) > 0.985 * math.sqrt(_dot(f, f)) for f in found):
            continue  # within 10 degrees of a point found already: the same basin
        start = [r * di for di in d]
        add(_polish(w, start) or _walk(w, start))
    return _points(w, names, found) if found else None


def _points(w: _Whitened, names: Sequence[str], found: list[list[float]]) -> list[DesignPoint]:
    found = sorted(found, key=lambda z: _dot(z, z))
    return [
        DesignPoint(math.sqrt(_dot(z, z)), w.normal(z, names), dict(zip(names, w.x(z), strict=True))) for z in found
    ]


def _directions(n: int) -> list[list[float]]:
    """Unit directions to look for the boundary in: 36 round the circle for two drivers; the axes both ways and a
    seeded spread of others beyond."""
    if n == 1:
        return [[1.0], [-1.0]]
    if n == 2:
        return [[math.cos(2 * math.pi * k / 36), math.sin(2 * math.pi * k / 36)] for k in range(36)]
    rng = random.Random(n)
    out = [[(1.0 if i == k else 0.0) * s for i in range(n)] for k in range(n) for s in (1.0, -1.0)]
    for _ in range(4 * n):
        v = [rng.gauss(0.0, 1.0) for _ in range(n)]
        norm = math.sqrt(_dot(v, v))
        out.append([x / norm for x in v])
    return out


def _ray(w: _Whitened, d: Sequence[float], limit: float = 40.0) -> float:
    """How far along direction `d` the boundary is first met (bisected); math.inf where not within `limit` sigmas."""
    along = w.x(d)  # the log moves one sigma along d: the excess at r sigmas is 1 + sum g (exp(r x) - 1)
    terms = list(zip(w.slopes, along, strict=True))

    def f(r: float) -> float:
        return 1.0 + sum(g * math.expm1(max(-50.0, min(50.0, r * x))) for g, x in terms)

    lo, step = 0.0, 0.05
    while lo < limit:
        hi = lo + step
        if f(hi) <= 0:
            for _ in range(30):  # a start for the walk, which finds the point itself
                mid = 0.5 * (lo + hi)
                lo, hi = (lo, mid) if f(mid) <= 0 else (mid, hi)
            return hi
        lo, step = hi, step * 1.5
    return math.inf


def _project(w: _Whitened, z: Sequence[float]) -> list[float] | None:
    """`z` moved onto the boundary along the excess's gradient."""
    z = list(z)
    for _ in range(50):
        fz, gz = w.f(z), w.grad(z)
        n2 = _dot(gz, gz)
        if n2 <= 1e-300:
            return None
        if abs(fz) < 1e-12:
            return z
        z = [zi - fz * g / n2 for zi, g in zip(z, gz, strict=True)]
    return None


def _walk(w: _Whitened, z: Sequence[float], heading: Sequence[float] | None = None) -> list[float] | None:
    """From boundary point `z` (first along `heading`, where given) down the distance along the boundary, in steps
    that lengthen while they bring it nearer and shorten while they do not; polished by Newton at the end."""
    here = _project(w, z)
    if here is None:
        return None
    dist = math.sqrt(_dot(here, here))
    step = 0.1 * max(dist, 0.1)
    direction = list(heading) if heading is not None else None
    for _ in range(2000):
        if step <= 1e-9 * max(dist, 1.0):
            break
        if direction is None:
            gz = w.grad(here)
            unit = [g / math.sqrt(_dot(gz, gz)) for g in gz]
            along = _dot(here, unit)
            down = [along * u - h for u, h in zip(unit, here, strict=True)]  # minus the tangent part of z
            size = math.sqrt(_dot(down, down))
            if size < 1e-12:
                break
            direction = [x / size for x in down]
        cand = _project(w, [h + step * d for h, d in zip(here, direction, strict=True)])
        if cand is not None and math.sqrt(_dot(cand, cand)) < dist:
            here, dist, step = cand, math.sqrt(_dot(cand, cand)), step * 1.5
        else:
            step *= 0.5
        direction = None
    return _polish(w, here) or (here if _stationary(w, here) and _is_minimum(w, here) else None)


def _is_minimum(w: _Whitened, z: Sequence[float]) -> bool:
    """The distance is least here along the boundary: I + mu H, on the boundary's tangent plane, is positive."""
    gz = w.grad(z)
    mu = -_dot(z, gz) / _dot(gz, gz)
    hz = w.hessian(z)
    tangents = _tangents(gz)
    n = len(z)
    m = [[_dot(t, [u[a] + mu * _dot(hz[a], u) for a in range(n)]) for u in tangents] for t in tangents]
    # positive definite exactly when Gaussian elimination without pivoting meets only positive pivots
    for col in range(len(m)):
        if m[col][col] <= 1e-12:
            return False
        for r in range(col + 1, len(m)):
            factor = m[r][col] / m[col][col]
            for c in range(col, len(m)):
                m[r][c] -= factor * m[col][c]
    return True


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    scale = max(1.0, math.sqrt(_dot(a, a)))
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True))) < 1e-4 * scale


def _tangents(normal: Sequence[float]) -> list[list[float]]:
    """An orthonormal basis of the plane at right angles to `normal` (Gram-Schmidt on the unit vectors)."""
    n2 = _dot(normal, normal)
    basis: list[list[float]] = [[g / math.sqrt(n2) for g in normal]] if n2 > 0 else []
    out: list[list[float]] = []
    for k in range(len(normal)):
        v = [1.0 if i == k else 0.0 for i in range(len(normal))]
        for b in basis:
            proj = _dot(v, b)
            v = [vi - proj * bi for vi, bi in zip(v, b, strict=True)]
        norm = math.sqrt(_dot(v, v))
        if norm > 1e-9:
            v = [vi / norm for vi in v]
            basis.append(v)
            out.append(v)
    return out


def bivariate_normal(a: float, b: float, rho: float) -> float:
    """P(X <= a, Y <= b) for standard normals of correlation rho (Sheppard's integral, Simpson's rule in angle)."""
    phi = 0.5 * math.erfc(-a / math.sqrt(2)), 0.5 * math.erfc(-b / math.sqrt(2))
    if rho >= 1 - 1e-9:
        return min(phi)
    if rho <= -1 + 1e-9:
        return max(0.0, phi[0] + phi[1] - 1.0)
    top, n = math.asin(rho), 64

    def integrand(t: float) -> float:
        c = math.cos(t)
        return math.exp(-(a * a + b * b - 2 * a * b * math.sin(t)) / (2 * c * c))

    h = top / n
    total = integrand(0.0) + integrand(top)
    total += sum((4 if k % 2 else 2) * integrand(k * h) for k in range(1, n))
    return min(1.0, max(0.0, phi[0] * phi[1] + total * h / 3 / (2 * math.pi)))


def union_probability(points: Sequence[DesignPoint], cov: Mapping[tuple[str, str], float], horizon_s: float) -> float:
    """The chance of reaching any of the points' flat boundaries within the horizon: Ditlevsen's upper bound, each
    pair's joint chance twice the terminal one of the two half-spaces."""
    tau = horizon_s / YEAR
    if tau <= 0 or not points:
        return 0.0
    probs = [first_passage(p.beta, 1.0, horizon_s) for p in points]
    order = sorted(range(len(points)), key=lambda k: -probs[k])
    total = probs[order[0]]
    for pos, k in enumerate(order[1:], start=1):
        joint = 0.0
        for j in order[:pos]:
            rho = points[k].correlation(points[j], cov)
            b_k, b_j = points[k].beta / math.sqrt(tau), points[j].beta / math.sqrt(tau)
            either = min(1.0, 2.0 * (1.0 - bivariate_normal(b_k, b_j, rho)))
            joint = max(joint, probs[k] + probs[j] - either)
        total += max(0.0, probs[k] - joint)
    return min(1.0, total)


def perp_monte_carlo(
    legs: Sequence[PerpLeg],
    drivers: Mapping[int, str],
    vols: Mapping[str, float],
    corr: Sequence[Sequence[float]],
    horizon_s: float,
    *,
    paths: int = 4000,
    steps: int = 48,
    seed: int = 0,
) -> tuple[float, float]:
    """(probability, its standard error) that any margin pool of `legs` reaches its boundary within the horizon,
    over correlated paths of the drivers' log prices (`vols` by driver, in the order of `corr`'s rows).

    Between steps the crossing is corrected with a Brownian bridge on each pool's excess, linearised over the step."""
    pools = margin_pools(legs, drivers)
    if isinstance(pools, str):
        raise ValueError(pools)
    names = list(vols)
    low = cholesky([list(r) for r in corr])
    dt = horizon_s / YEAR / steps
    scale = [vols[a] * math.sqrt(dt) for a in names]
    cov = {(a, b): corr[i][j] * vols[a] * vols[b] * dt for i, a in enumerate(names) for j, b in enumerate(names)}
    rng = random.Random(seed)
    hits = 0.0
    for _ in range(paths):
        x = dict.fromkeys(names, 0.0)
        before = [pool.excess(x) for pool in pools]
        survive = 1.0
        for _ in range(steps):
            z = [rng.gauss(0.0, 1.0) for _ in names]
            step_var = [
                sum(pool.slopes.get(a, 0.0) * math.exp(x[a]) * pool.slopes.get(b, 0.0) * math.exp(x[b]) * cov[a, b]
                    for a in names for b in names)
                for pool in pools
            ]  # fmt: skip
            for i, a in enumerate(names):
                x[a] += scale[i] * sum(low[i][k] * z[k] for k in range(i + 1))
            after = [pool.excess(x) for pool in pools]
            if min(after) <= 0:
                survive = 0.0
                break
            for f0, f1, v in zip(before, after, step_var, strict=True):
                if v > 0:
                    survive *= 1.0 - math.exp(-2.0 * f0 * f1 / v)
            before = after
        hits += 1.0 - survive
    prob = hits / paths
    return prob, math.sqrt(max(prob * (1 - prob), 0.0) / paths)


__all__ = [
    "DesignPoint",
    "Pool",
    "bivariate_normal",
    "design_points",
    "margin_pools",
    "perp_monte_carlo",
    "union_probability",
]
