"""dYdX v4 subaccount simulator: the chain's IsLiquidatable replayed in integers, prices, USDC and time replaceable.

Net collateral is USDC quantums plus each position's BaseToQuoteQuantums notional (truncated toward zero); the
maintenance requirement is each position's MMR on its liquidity tier's base IMF (open interest does not scale it);
liquidatable iff MMR > 0 and MMR > NC. Health is NC * 1e18 // MMR, the adapter's own figure.

Prices are integers on each market's price grid: units of 10**-price_decimals USDC per whole coin (1e-8 USDC unless
the indexer shows more decimals), so every served oracle price is an exact integer and a shock rounds down on it.

Funding: dYdX v4 settles it at every funding tick, on the hour. `at_time(t)` applies one tick per whole hour
boundary after the read time, each at the market's served nextFundingRate held constant and at the simulator's
oracle price: a position of signed size s coins pays s * price * rate USDC per tick (receives when negative). The
ticks' exact sum is floored to quantums once, as the chain floors a subaccount's accumulated settlement. The chain
rounds each tick's funding index to ppm of a quote quantum per base quantum; that rounding is not replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

from watcher.adapters.dydx_v4.math import is_liquidatable, maintenance_requirement, notional_quantums
from watcher.adapters.dydx_v4.parse import Market
from watcher.model import WAD

HOUR = 3600
QUOTE = "USDC"


def grid_price(m: Market) -> int:
    """The market's oracle price in units of its price grid (10**-price_decimals USDC per coin)."""
    units = m.oracle_price * 10**m.price_decimals
    # price_decimals is at least the served decimals, so the served price is on the grid; floor a stray one
    return units.numerator // units.denominator


@dataclass(frozen=True, slots=True)
class DydxSubaccountSim:
    """One subaccount's margin check at replaceable prices, USDC balance and time."""

    usdc: int  #: USDC quantums as read (unsettled funding included, floored)
    markets: tuple[Market, ...]  #: the markets of the open positions, as read
    prices: tuple[int, ...]  #: oracle price of each market on its grid (see `grid_price`), aligned with `markets`
    quantums: tuple[int, ...]  #: signed base quantums of each position, aligned with `markets`
    start: int  #: the read time (unix seconds)
    now: int  #: the time the state is projected to (funding ticks between start and now applied)
    supplied: int = 0  #: USDC quantums deposited by `with_supply`

    def price_of(self, i: int) -> Fraction:
        """Market i's oracle price in USDC per whole coin."""
        return Fraction(self.prices[i], 10 ** self.markets[i].price_decimals)

    def notionals(self) -> list[int]:
        """Each position's signed notional in quote quantums, truncated toward zero as the chain does."""
        return [
            notional_quantums(q, m.atomic_resolution, self.price_of(i))
            for i, (m, q) in enumerate(zip(self.markets, self.quantums, strict=True))
        ]

    def ticks(self) -> int:
        """Funding ticks (whole UTC hours) after the read time, up to `now`."""
        return max(self.now // HOUR - self.start // HOUR, 0)

    def funding_per_tick(self) -> Fraction | None:
        """USDC quantums the subaccount pays per tick (negative: receives); None if a market has no served rate."""
        total = Fraction(0)
        for i, (m, q) in enumerate(zip(self.markets, self.quantums, strict=True)):
            if m.funding_rate is None:
                return None
            total += q * self.price_of(i) * Fraction(10) ** (m.atomic_resolution + 6) * m.funding_rate
        return total

    def not_modelled(self) -> str | None:
        """Why the time to liquidation cannot be projected (a market without a served rate); None when it can."""
        missing = [m.ticker for m in self.markets if m.funding_rate is None]
        if missing:
            return f"not modelled: the indexer served no usable nextFundingRate for {', '.join(missing)}"
        return None

    def funding_paid(self) -> int:
        """Quote quantums paid in funding from the read time to `now`, rounded against the account."""
        n = self.ticks()
        if n == 0:
            return 0
        per = self.funding_per_tick()
        if per is None:
            return 0  # forecast refuses such a subaccount; a what-if at a later time keeps the balance as read
        paid = n * per
        return -((-paid.numerator) // paid.denominator)  # the balance is floored: the payment is rounded up

    def net_collateral(self) -> int:
        """NC: USDC (after funding and deposits) plus the signed notionals."""
        return self.usdc + self.supplied - self.funding_paid() + sum(self.notionals())

    def maintenance(self) -> int:
        """MMR: the sum of each position's maintenance requirement at its notional."""
        return sum(
            maintenance_requirement(n, m.imf_ppm, m.fraction_ppm)
            for n, m in zip(self.notionals(), self.markets, strict=True)
        )

    def liquidatable(self) -> bool:
        """The chain's IsLiquidatable: a non-zero MMR above NC."""
        return is_liquidatable(self.net_collateral(), self.maintenance())

    def health(self) -> int | None:
        """NC * 1e18 // MMR (below 1e18 exactly when liquidatable); None with nothing required."""
        mmr = self.maintenance()
        return None if mmr <= 0 else self.net_collateral() * WAD // mmr

    def at_time(self, timestamp: int) -> DydxSubaccountSim:
        """The subaccount with the funding ticks up to `timestamp` settled at the served rates, prices held."""
        return replace(self, now=timestamp)

    def _index(self, asset: str) -> int | None:
        key = asset.upper()
        for i, m in enumerate(self.markets):
            if key in (m.symbol.upper(), m.ticker.upper()):
                return i
        return None

    def with_price(self, asset: str, price: int) -> DydxSubaccountSim:
        """One market's oracle price replaced (`asset`: "BTC" or "BTC-USD"; `price` on its grid).

        USDC and markets the subaccount holds no position in leave it as it is: the chain values USDC at 1.
        """
        i = self._index(asset)
        if i is None:
            return self
        if price < 0:
            raise ValueError(f"negative price {price} for {asset}")
        prices = list(self.prices)
        prices[i] = price
        return replace(self, prices=tuple(prices))

    def with_supply(self, asset: str, amount: int) -> DydxSubaccountSim:
        """After depositing `amount` USDC quantums (the only collateral the chain's margin counts)."""
        if asset.upper() != QUOTE:
            raise ValueError(f"a dYdX subaccount takes USDC as collateral, not {asset}")
        return replace(self, supplied=self.supplied + amount)

    def with_repay(self, asset: str, amount: int) -> DydxSubaccountSim:
        """A dYdX subaccount has no debt to repay (a negative USDC balance is settled by deposits)."""
        raise ValueError("a dYdX subaccount has no debt")

    def ladder_market(self) -> tuple[str, int, int] | None:
        """The price ladder's market: the largest notional, moved against it (-1 down for a long, +1 up for a short)."""
        rows = [
            (abs(n), m.symbol, price, -1 if q > 0 else 1)
            for n, m, price, q in zip(self.notionals(), self.markets, self.prices, self.quantums, strict=True)
            if q and price > 0
        ]
        if not rows:
            return None
        _, symbol, price, sign = max(rows, key=lambda r: r[0])
        return symbol, price, sign


def simulator_of(usdc: int, markets: list[Market], quantums: list[int], read_at: int) -> DydxSubaccountSim:
    """The simulator of a subaccount as read: positions' markets and signed quantums, the USDC balance."""
    return DydxSubaccountSim(
        usdc=usdc,
        markets=tuple(markets),
        prices=tuple(grid_price(m) for m in markets),
        quantums=tuple(quantums),
        start=read_at,
        now=read_at,
    )
