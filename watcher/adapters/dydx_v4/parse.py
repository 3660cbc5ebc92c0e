"""dYdX v4 indexer answers parsed exactly (Fraction of the served decimal strings): addresses, markets, subaccounts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from watcher.adapters.base import ReadError
from watcher.adapters.dydx_v4.math import (
    PPM,
    USDC,
    _ceil_div,
    _trunc,
)

PROTOCOL = "dydx_v4"
DEFAULT_BASE_URL = "https://indexer.dydx.trade"  #: the public indexer of the DYDX token holders' deployment; no key
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
    #: nextFundingRate: the predicted rate of the next hourly funding tick (longs pay when positive); None if absent
    funding_rate: Fraction | None = None

    @property
    def symbol(self) -> str:
        """The base asset of the ticker ("BTC" of "BTC-USD"): the name what-if shocks use."""
        return self.ticker.split("-")[0]

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
        funding_rate=_funding_rate(raw, where),
    )


def _funding_rate(raw: Mapping[str, Any], where: str) -> Fraction | None:
    """nextFundingRate as an exact Fraction; None when absent or implausible.

    Only the forecast uses it: a bad rate costs the time to liquidation ("not modelled"), never the check itself.
    """
    try:
        rate = _opt_dec(raw, "nextFundingRate", where)
    except ReadError:
        return None
    # 100 % or more per hour is not a market's funding but a broken answer
    return rate if rate is not None and abs(rate) < 1 else None


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
