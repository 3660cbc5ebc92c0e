"""dYdX v4 perpetuals over the indexer REST API: replay the chain's margin math exactly, one Position per subaccount.

The protocol's own check (x/clob IsLiquidatable over x/subaccounts GetRiskForSubaccount) is, per subaccount:

- net collateral NC = USDC quantums + sum over positions of BaseToQuoteQuantums(signed quantums, oracle price), each
  notional truncated toward zero;
- maintenance MMR = sum over positions of ceil(ceil(|notional| * imf_ppm / 1e6) * maintenance_fraction_ppm / 1e6),
  where |notional| is floored and imf_ppm is the liquidity tier's BASE initial margin: since v4-chain #1161 the
  maintenance side passes open interest 0, so open-interest scaling (OIMF) only raises the INITIAL requirement;
- liquidatable iff MMR > 0 and MMR > NC.

The initial requirement uses the OI-scaled IMF: base + floor((1e6 - base) * (oi - lower) / (upper - lower)) ppm between
the caps, 1e6 at or above the upper cap (upper cap 0 disables scaling), on OI notional = open interest * oracle price.

Units: money is USDC quantums (1e-6 USDC, the chain's quote quantum), so base_unit is 1e6 and base_currency "USDC".
Perp leg sizes are base quantums (10**atomicResolution coins); prices are exact Fractions in USDC per whole coin (as
the oracle price is served, and as watcher.render shows perp prices).
The indexer serves human decimal strings; they are parsed with Fraction(str), never float. The USDC balance it serves
already includes unsettled funding; it is floored to quantums, as the chain floors the settlement (Euclidean division).
The indexer's own equity and freeCollateral (freeCollateral = equity - base initial margin) are compared with ours;
beyond rounding both go in details and the protocol formula is trusted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

import aiohttp

from watcher.adapters.base import Account, ReadError
from watcher.adapters.http import DEFAULT_MAX_BYTES, all_answers, request_json
from watcher.model import WAD, BlockRef, Leg, PerpLeg, Position
from watcher.registry import VenueProtocol, register

PROTOCOL = "dydx_v4"
DEFAULT_BASE_URL = "https://indexer.dydx.trade"  #: the public indexer of the DYDX token holders' deployment; no key
USDC = 10**6  #: quote quantums per USDC (the chain's QuoteCurrencyAtomicResolution is -6)
PPM = 10**6
FIRST_ISOLATED_SUBACCOUNT = 128  #: subaccounts 128+ are the children the front ends use for isolated positions
MAX_SUBACCOUNT = 128_000  #: x/subaccounts MaxSubaccountIdNumber
#: prices are searched on a grid of 10**-k USD, k = max(this, the decimals the indexer shows): the oracle exponent
#: itself is not served, and any finer grid only makes "liquidatable here, not one unit safer" more precise
MIN_PRICE_DECIMALS = 8
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_PLAIN = re.compile(r"^-?[0-9]{1,60}(\.[0-9]{1,60})?$")
#: atomic resolutions and price exponents on the chain are small; a wild one must not make us build huge powers of 10
_MAX_RESOLUTION = 40
#: 20-byte account addresses have 32 data characters plus the 6-character checksum; 32-byte (module) ones have 52 + 6
_ADDRESS = re.compile(rf"^dydx1[{_BECH32}]{{38}}$|^dydx1[{_BECH32}]{{58}}$")


def validate_address(addr: str) -> str:
    """The address, lower-cased, if it has the shape of a dYdX bech32 address ("dydx1" + 38 or 58 bech32 chars)."""
    if not isinstance(addr, str):
        raise ValueError(f"dYdX address must be a string, got {type(addr).__name__}")
    text = addr.strip()
    # bech32 is case-insensitive but never mixed-case
    if text != text.lower() and text != text.upper():
        raise ValueError(f"dYdX address {addr!r} mixes upper and lower case")
    text = text.lower()
    if not text.startswith("dydx1"):
        raise ValueError(f"dYdX address {addr!r} must start with 'dydx1'")
    bad = sorted({c for c in text[5:] if c not in _BECH32})
    if bad:
        raise ValueError(f"dYdX address {addr!r} has characters outside bech32: {''.join(bad)!r} (no 1, b, i, o)")
    if not _ADDRESS.match(text):
        raise ValueError(f"dYdX address {addr!r} has {len(text)} characters; expected 43 (or 63 for a module account)")
    return text


# --- protocol math (x/perpetuals, lib) --------------------------------------------------------------------------------


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _trunc(x: Fraction) -> int:
    """Toward zero, as Go's big.Int Quo."""
    return x.numerator // x.denominator if x >= 0 else -((-x.numerator) // x.denominator)


def notional_quantums(quantums: int, atomic_resolution: int, price: Fraction) -> int:
    """BaseToQuoteQuantums: quantums * price * 10**(atomicResolution + 6), signed, truncated toward zero.

    `price` is the oracle price in USDC per whole coin (= price * 10**exponent on chain), so the product is exact.
    """
    return _trunc(quantums * price * Fraction(10) ** (atomic_resolution + 6))


def adjusted_imf_ppm(imf_ppm: int, lower_cap: int, upper_cap: int, oi_notional: int) -> int:
    """GetAdjustedInitialMarginPpm: the open-interest-scaled initial margin fraction, in ppm (caps in quantums)."""
    if upper_cap == 0 or oi_notional <= lower_cap:
        return imf_ppm
    if oi_notional >= upper_cap:
        return PPM
    return imf_ppm + (PPM - imf_ppm) * (oi_notional - lower_cap) // (upper_cap - lower_cap)


def initial_requirement(notional: int, imf_ppm: int) -> int:
    """Initial margin of an absolute notional at an IMF in ppm, rounded up (BigMulPpm(roundUp=true))."""
    return _ceil_div(abs(notional) * imf_ppm, PPM)


def maintenance_requirement(notional: int, imf_ppm: int, fraction_ppm: int) -> int:
    """MMR = ceil(ceil(|notional| * base imf / 1e6) * maintenance fraction / 1e6): two ceilings, as the chain does."""
    return _ceil_div(initial_requirement(notional, imf_ppm) * fraction_ppm, PPM)


def is_liquidatable(net_collateral: int, mmr: int) -> bool:
    """margin.Risk.IsLiquidatable: a non-zero maintenance requirement above net collateral."""
    return mmr > 0 and mmr > net_collateral


# --- parsing ----------------------------------------------------------------------------------------------------------


def _field(obj: Any, key: str, where: str) -> Any:
    """A required field of any type, or ReadError naming it."""
    if not isinstance(obj, Mapping) or key not in obj or obj[key] is None:
        raise ReadError(f"{PROTOCOL}: {where}: missing field {key!r}")
    return obj[key]


def _dec(obj: Any, key: str, where: str) -> Fraction:
    """A required decimal field as an exact Fraction (strings as documented; integers tolerated; never floats)."""
    value = _field(obj, key, where)
    if isinstance(value, (bool, float)) or not isinstance(value, (str, int)):
        raise ReadError(f"{PROTOCOL}: {where}: field {key!r} is not a decimal string: {value!r}")
    # plain decimals only, as the indexer's Big.toFixed() writes them: an exponent such as "1e999999999" would make
    # Fraction build an enormous integer
    if isinstance(value, str) and not _PLAIN.match(value):
        raise ReadError(f"{PROTOCOL}: {where}: field {key!r} is not a plain decimal: {value[:40]!r}")
    return Fraction(value)


def _int(obj: Any, key: str, where: str) -> int:
    value = _field(obj, key, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReadError(f"{PROTOCOL}: {where}: field {key!r} is not an integer: {value!r}")
    return value


def _resolution(raw: Any, where: str) -> int:
    ar = _int(raw, "atomicResolution", where)
    if abs(ar) > _MAX_RESOLUTION:
        raise ReadError(f"{PROTOCOL}: {where}: atomicResolution {ar} out of range")
    return ar


def _decimals(text: str) -> int:
    """Digits after the decimal point of a plain decimal string (0 for exponents or integers)."""
    return len(text.split(".", 1)[1]) if "." in text and "e" not in text.lower() else 0


@dataclass(frozen=True, slots=True)
class Market:
    """One perpetual market as /v4/perpetualMarkets serves it, converted to the chain's integers."""

    ticker: str
    oracle_price: Fraction  #: USDC per whole coin
    imf_ppm: int  #: the liquidity tier's base initial margin fraction
    fraction_ppm: int  #: the liquidity tier's maintenance fraction (of the base initial margin)
    fraction_exact: bool  #: False when the served fractions did not pin the maintenance fraction to an integer ppm
    mmf: Fraction  #: maintenance margin fraction as served (= imf * fraction)
    open_interest: Fraction  #: coins (sum of long sizes)
    oi_lower_cap: int  #: quantums
    oi_upper_cap: int  #: quantums
    atomic_resolution: int
    market_type: str  #: CROSS or ISOLATED
    price_decimals: int  #: the search grid for liquidation prices: 10**-price_decimals USDC

    @property
    def oi_notional(self) -> int:
        """Open interest in quote quantums at the oracle price (the chain converts OI with BaseToQuoteQuantums)."""
        return _trunc(self.open_interest * self.oracle_price * USDC)


def _ppm(value: Fraction, key: str, where: str) -> int:
    ppm = value * PPM
    if ppm.denominator != 1 or not 0 <= ppm <= PPM:
        raise ReadError(f"{PROTOCOL}: {where}: {key} {value} is not a whole ppm in [0, 1]")
    return int(ppm)


def _quantums_cap(value: Fraction, key: str, where: str) -> int:
    q = value * USDC
    if q.denominator != 1 or q < 0:
        raise ReadError(f"{PROTOCOL}: {where}: {key} {value} is not a whole number of USDC quantums")
    return int(q)


def parse_market(ticker: str, raw: Any) -> Market:
    """A Market from one entry of /v4/perpetualMarkets "markets"; ReadError on missing or impossible values."""
    where = f"perpetualMarkets[{ticker}]"
    price = _dec(raw, "oraclePrice", where)
    if price <= 0:
        raise ReadError(f"{PROTOCOL}: {where}: non-positive oracle price {price}")
    imf = _dec(raw, "initialMarginFraction", where)
    mmf = _dec(raw, "maintenanceMarginFraction", where)
    imf_ppm = _ppm(imf, "initialMarginFraction", where)
    if mmf < 0 or mmf > imf:
        raise ReadError(f"{PROTOCOL}: {where}: maintenanceMarginFraction {mmf} outside [0, {imf}]")
    # the indexer serves imf * fraction; the chain applies the fraction (an integer ppm) to the rounded-up initial
    # margin, so recover it; if it is not a whole ppm, take the largest consistent one (never understate the MMR)
    if imf_ppm == 0:
        fraction, exact = 0, mmf == 0
    else:
        ratio = mmf / imf * PPM
        exact = ratio.denominator == 1
        fraction = min(PPM, _ceil_div(ratio.numerator, ratio.denominator))
    lower = _dec(raw, "openInterestLowerCap", where) if raw.get("openInterestLowerCap") is not None else Fraction(0)
    upper = _dec(raw, "openInterestUpperCap", where) if raw.get("openInterestUpperCap") is not None else Fraction(0)
    lower_q, upper_q = (
        _quantums_cap(lower, "openInterestLowerCap", where),
        _quantums_cap(upper, "openInterestUpperCap", where),
    )
    if upper_q and lower_q > upper_q:
        raise ReadError(f"{PROTOCOL}: {where}: openInterestLowerCap {lower} above openInterestUpperCap {upper}")
    oi = _dec(raw, "openInterest", where)
    if oi < 0:
        raise ReadError(f"{PROTOCOL}: {where}: negative openInterest {oi}")
    market_type = raw.get("marketType") or "CROSS"
    if market_type not in ("CROSS", "ISOLATED"):
        raise ReadError(f"{PROTOCOL}: {where}: unknown marketType {market_type!r}")
    return Market(
        ticker=ticker,
        oracle_price=price,
        imf_ppm=imf_ppm,
        fraction_ppm=fraction,
        fraction_exact=exact,
        mmf=mmf,
        open_interest=oi,
        oi_lower_cap=lower_q,
        oi_upper_cap=upper_q,
        atomic_resolution=_resolution(raw, where),
        market_type=market_type,
        price_decimals=max(MIN_PRICE_DECIMALS, _decimals(str(raw["oraclePrice"]))),
    )


@dataclass(frozen=True, slots=True)
class Holding:
    """One open perpetual position of a subaccount, as served."""

    market: str
    size: Fraction  #: signed coins: negative is short
    entry_price: Fraction
    net_funding: Fraction | None
    unrealized_pnl: Fraction | None


@dataclass(frozen=True, slots=True)
class Subaccount:
    """A subaccount answer: USDC (signed, funding included), open positions, and the indexer's own figures."""

    address: str
    number: int
    usdc: Fraction  #: signed USDC
    other_assets: tuple[str, ...]  #: non-USDC asset positions (not valued by the chain's margin today)
    holdings: tuple[Holding, ...]
    equity: Fraction | None  #: the indexer's figure
    free_collateral: Fraction | None  #: the indexer's figure
    height: int  #: latestProcessedBlockHeight (0 when not served)


def _opt_dec(obj: Mapping[str, Any], key: str, where: str) -> Fraction | None:
    return None if obj.get(key) is None else _dec(obj, key, where)


def _shown(obj: Mapping[str, Any], key: str, where: str) -> Fraction | None:
    """A display-only figure (funding, PnL): None rather than a failed read when it is absent or odd."""
    try:
        return _opt_dec(obj, key, where)
    except ReadError:
        return None


def parse_subaccount(address: str, number: int, body: Any) -> Subaccount:
    """A Subaccount from GET /v4/addresses/{address}/subaccountNumber/{n}; ReadError on a malformed answer."""
    where = f"subaccount {address}/{number}"
    sub = body.get("subaccount", body) if isinstance(body, Mapping) else body
    if not isinstance(sub, Mapping):
        raise ReadError(f"{PROTOCOL}: {where}: answer is not an object")
    served = sub.get("subaccountNumber")
    if served is not None and served != number:
        raise ReadError(f"{PROTOCOL}: {where}: the indexer answered for subaccount {served!r}")
    assets = _field(sub, "assetPositions", where)
    perps = _field(sub, "openPerpetualPositions", where)
    if not isinstance(assets, Mapping) or not isinstance(perps, Mapping):
        raise ReadError(f"{PROTOCOL}: {where}: assetPositions/openPerpetualPositions are not objects")
    usdc, others = Fraction(0), []
    for symbol, pos in assets.items():
        w = f"{where}.assetPositions[{symbol}]"
        size = _dec(pos, "size", w)
        side = _field(pos, "side", w)
        if side not in ("LONG", "SHORT") or size < 0:
            raise ReadError(f"{PROTOCOL}: {w}: bad side/size {side!r} {size}")
        if symbol == "USDC":
            usdc = size if side == "LONG" else -size
        elif size:
            others.append(str(symbol))
    holdings = []
    for key, pos in perps.items():
        w = f"{where}.openPerpetualPositions[{key}]"
        market = str(_field(pos, "market", w))
        size = _dec(pos, "size", w)
        side = _field(pos, "side", w)
        # the indexer stores signed sizes (quantums * 10**atomicResolution): the side must agree with the sign
        if side not in ("LONG", "SHORT") or (size > 0) != (side == "LONG") or size == 0:
            raise ReadError(f"{PROTOCOL}: {w}: side {side!r} does not match size {size}")
        if pos.get("status", "OPEN") != "OPEN":
            continue
        holdings.append(
            Holding(
                market,
                size,
                _dec(pos, "entryPrice", w),
                _shown(pos, "netFunding", w),
                _shown(pos, "unrealizedPnl", w),
            )
        )
    height = sub.get("latestProcessedBlockHeight") or sub.get("updatedAtHeight") or 0
    try:
        height = int(height)
    except (TypeError, ValueError):
        raise ReadError(f"{PROTOCOL}: {where}: bad block height {height!r}") from None
    return Subaccount(
        address,
        number,
        usdc,
        tuple(others),
        tuple(holdings),
        _opt_dec(sub, "equity", where),
        _opt_dec(sub, "freeCollateral", where),
        height,
    )


# --- valuation --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Valued:
    """One position under the chain's math at one oracle price."""

    holding: Holding
    market: Market
    quantums: int  #: signed base quantums
    notional: int  #: signed, truncated toward zero
    mmr: int
    imr: int  #: OI-scaled
    imr_base: int  #: at the base IMF (what the indexer's freeCollateral subtracts)
    imf_effective_ppm: int


def quantums_of(size: Fraction, market: Market) -> int:
    """A served size in coins as base quantums; ReadError when it is finer than the market's atomic resolution."""
    q = size / Fraction(10) ** market.atomic_resolution
    if q.denominator != 1:
        raise ReadError(
            f"{PROTOCOL}: {market.ticker}: size {size} is finer than atomicResolution {market.atomic_resolution}"
        )
    return int(q)


def value(holding: Holding, market: Market) -> Valued:
    """Notional, maintenance and initial requirement of one position, in quantums, as the chain computes them."""
    q = quantums_of(holding.size, market)
    notional = notional_quantums(q, market.atomic_resolution, market.oracle_price)
    imf = adjusted_imf_ppm(market.imf_ppm, market.oi_lower_cap, market.oi_upper_cap, market.oi_notional)
    return Valued(
        holding,
        market,
        q,
        notional,
        maintenance_requirement(notional, market.imf_ppm, market.fraction_ppm),
        initial_requirement(notional, imf),
        initial_requirement(notional, market.imf_ppm),
        imf,
    )


def _usdc_quantums(usdc: Fraction) -> int:
    # the chain adds floor(settlement ppm / 1e6) to the balance: floor the (funding-adjusted) served balance likewise
    return (usdc * USDC).__floor__()


def _least(pred: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Least n in [lo, hi] with pred(n), for pred monotone False->True; None when pred(hi) is False."""
    if not pred(hi):
        return None
    lo -= 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return hi


def liquidation_price(v: Valued, base: int, others_mmr: int) -> Fraction | None:
    """Oracle price (USDC per coin, on the market's search grid) at which the subaccount turns liquidatable.

    Everything but this market's price is held: `base` is USDC plus the other notionals, `others_mmr` their MMR.
    The check depends on the price only through N = floor(|q| * p * 10**(ar+6)); N - MMR(N) never falls as N grows
    (each step adds at most one quantum of MMR), so for a long the liquidatable N are those up to some N*, and for a
    short those from some N* on. The answer is the grid price nearest the safe side that still maps into that set:
    liquidatable there, and not one grid unit (10**-price_decimals) further toward safety.
    """
    m, q = v.market, v.quantums
    if q == 0:
        return None
    sign = 1 if q > 0 else -1

    def liq(n: int) -> bool:
        return is_liquidatable(base + sign * n, others_mmr + maintenance_requirement(n, m.imf_ppm, m.fraction_ppm))

    scale = abs(q) * Fraction(10) ** (m.atomic_resolution + 6)  # N = floor(scale * p)
    unit = Fraction(1, 10**m.price_decimals)
    hi = max(2 * abs(v.notional), 1)
    if sign > 0:
        # largest liquidatable N: first find a safe N above it
        while liq(hi):
            hi *= 2
            if hi > 1 << 200:
                return None  # liquidatable at every price (a 100% maintenance fraction): no boundary to report
        # from N = 1: at N = 0 the MMR may be 0, and a zero MMR is never liquidatable whatever the collateral
        first_safe = _least(lambda n: not liq(n), 1, hi)
        if first_safe is None or first_safe == 1:
            return None  # no positive notional of this position is liquidatable
        # liquidatable iff scale * p < first_safe: the largest grid price strictly below first_safe / scale
        bound = first_safe / scale / unit
        p = (_ceil_div(bound.numerator, bound.denominator) - 1) * unit
        # a grid coarser than one quantum of notional could land on N = 0: then there is no grid price to report
        return p if p > 0 and liq((scale * p).__floor__()) else None
    while not liq(hi):
        hi *= 2
        if hi > 1 << 200:
            return None
    n_star = _least(liq, 0, hi)
    assert n_star is not None
    # liquidatable iff scale * p >= n_star: the least positive grid price at or above n_star / scale
    bound = n_star / scale / unit
    steps = max(_ceil_div(bound.numerator, bound.denominator), 1)
    return steps * unit


def _fmt(x: Fraction | None, places: int = 8) -> str | None:
    """A Fraction as a rounded decimal string, for display details only."""
    if x is None:
        return None
    scaled = round(x * 10**places)
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10**places)
    return f"{sign}{whole}.{frac:0{places}d}"


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
    )


# --- HTTP -------------------------------------------------------------------------------------------------------------


async def _get(
    session: aiohttp.ClientSession,
    url: str,
    what: str,
    timeout: float,
    missing_ok: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Any:
    """One GET as JSON; transport, status and JSON problems become ReadError (404 gives None when `missing_ok`)."""
    return await request_json(
        session, "GET", url, venue=PROTOCOL, what=what, timeout=timeout, missing_ok=missing_ok, max_bytes=max_bytes
    )


class DydxV4Reader:
    """Reads dYdX v4 subaccounts through an indexer; a VenueReader (watcher.adapters.base)."""

    protocol = PROTOCOL

    def __init__(
        self,
        name: str,
        base_url: str,
        accounts: list[Account],
        subaccounts: Mapping[str, list[int]] | None = None,
        timeout: float = 10.0,
        max_age: float = 120.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        """Validate the accounts (dydx1... addresses) and the subaccount numbers to read for each (default [0])."""
        self.max_age = max_age  #: seconds: an indexer whose latest block is older serves stale state: unknown
        self.chain = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_bytes = max_bytes  #: bytes one answer may have
        self.accounts = [Account(validate_address(a.address), a.label) for a in accounts]
        subs = {validate_address(k): list(v) for k, v in (subaccounts or {}).items()}
        self.subaccounts: dict[str, list[int]] = {}
        for acct in self.accounts:
            nums = sorted(set(subs.get(acct.address, [0])))
            for n in nums:
                if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_SUBACCOUNT:
                    raise ValueError(f"{PROTOCOL}: {acct.address}: subaccount number {n!r} not in 0..{MAX_SUBACCOUNT}")
            self.subaccounts[acct.address] = nums
        self.skipped: list[tuple[Account, str]] = []

    def _check_fresh(self, raw: Any, now: float) -> None:
        """An indexer stuck behind the chain answers happily with old state: that is unknown, not healthy."""
        stamp = _field(raw, "time", "height")
        try:
            at = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise ReadError(f"{PROTOCOL}: height: time {str(stamp)[:40]!r} is not an ISO-8601 time") from None
        age = now - at
        if age > self.max_age:
            height = raw.get("height") if isinstance(raw, Mapping) else None
            raise ReadError(
                f"{PROTOCOL}: the indexer's latest block {height} is {age:.0f} s old (max {self.max_age:.0f} s): "
                "its state is stale"
            )

    def _targets(self) -> list[tuple[Account, int]]:
        return [(a, n) for a in self.accounts for n in self.subaccounts[a.address]]

    async def read(self, session: aiohttp.ClientSession) -> list[Position]:
        """Positions now: one per subaccount; ReadError when an answer cannot be trusted."""
        targets = self._targets()
        base = self.base_url + "/v4"
        raw_height, raw_markets, *raw_subs = await all_answers(
            _get(session, f"{base}/height", "height", self.timeout, max_bytes=self.max_bytes),
            _get(session, f"{base}/perpetualMarkets", "perpetualMarkets", self.timeout, max_bytes=self.max_bytes),
            *(
                _get(
                    session,
                    f"{base}/addresses/{a.address}/subaccountNumber/{n}",
                    f"subaccount {n}",
                    self.timeout,
                    True,
                    self.max_bytes,
                )
                for a, n in targets
            ),
        )
        fetched_at = int(time.time())
        self._check_fresh(raw_height, time.time())
        table = _field(raw_markets, "markets", "perpetualMarkets")
        if not isinstance(table, Mapping):
            raise ReadError(f"{PROTOCOL}: perpetualMarkets: markets is not an object")
        skipped: list[tuple[Account, str]] = []
        subs: list[tuple[Account, Subaccount]] = []
        for (acct, n), body in zip(targets, raw_subs, strict=True):
            if body is None:
                skipped.append((acct, f"subaccount {n}: the indexer has no such subaccount (404)"))
                continue
            sub = parse_subaccount(acct.address, n, body)
            if sub.other_assets:
                # the chain's margin counts USDC only today; another asset would make our figure wrong, not unknown
                skipped.append((acct, f"subaccount {n}: non-USDC assets {', '.join(sub.other_assets)} not valued"))
                continue
            subs.append((acct, sub))
        markets: dict[str, Market] = {}
        for _, sub in subs:
            for h in sub.holdings:
                if h.market in markets:
                    continue
                if h.market not in table:
                    raise ReadError(f"{PROTOCOL}: unknown market {h.market!r} (not in perpetualMarkets)")
                markets[h.market] = parse_market(h.market, table[h.market])
        out = [position_of(sub, markets, acct, self.chain, fetched_at) for acct, sub in subs]
        self.skipped = skipped
        return out


def make_reader(
    name: str,
    base_url: str,
    accounts: Sequence[Account],
    subaccounts: Mapping[str, list[int]] | None = None,
    timeout: float = 10.0,
    max_age: float = 120.0,
) -> DydxV4Reader:
    """A DydxV4Reader from a venue's settings."""
    return DydxV4Reader(name, base_url, list(accounts), subaccounts, timeout, max_age)


def make_venue_reader(venue: Any, accounts: Sequence[Account]) -> DydxV4Reader:
    """The reader of a resolved [venues.<name>] of dYdX v4: each account's subaccounts from the config."""
    subaccounts = {a.address: list(a.subaccounts) for a in venue.accounts}
    return DydxV4Reader(
        venue.name, venue.base_url, list(accounts), subaccounts, venue.timeout, venue.max_age, venue.max_response_bytes
    )


register(VenueProtocol("dydx_v4", make_venue_reader, address=validate_address))
