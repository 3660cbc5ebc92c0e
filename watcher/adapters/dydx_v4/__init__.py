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

from watcher.adapters.dydx_v4.math import (
    PPM,
    USDC,
    adjusted_imf_ppm,
    initial_requirement,
    is_liquidatable,
    maintenance_requirement,
    notional_quantums,
)
from watcher.adapters.dydx_v4.parse import (
    DEFAULT_BASE_URL,
    FIRST_ISOLATED_SUBACCOUNT,
    MAX_SUBACCOUNT,
    MIN_PRICE_DECIMALS,
    PROTOCOL,
    Holding,
    Market,
    Subaccount,
    parse_market,
    parse_subaccount,
    validate_address,
)
from watcher.adapters.dydx_v4.position import position_of
from watcher.adapters.dydx_v4.reader import (
    DydxV4Reader,
    make_reader,
    make_venue_reader,
)
from watcher.adapters.dydx_v4.simulator import DydxSubaccountSim, grid_price, simulator_of
from watcher.adapters.dydx_v4.valuation import (
    Valued,
    liquidation_price,
    quantums_of,
    value,
)
from watcher.registry import VenueProtocol, register

__all__ = [
    "DEFAULT_BASE_URL",
    "FIRST_ISOLATED_SUBACCOUNT",
    "MAX_SUBACCOUNT",
    "MIN_PRICE_DECIMALS",
    "PPM",
    "PROTOCOL",
    "USDC",
    "DydxSubaccountSim",
    "DydxV4Reader",
    "Holding",
    "Market",
    "Subaccount",
    "Valued",
    "adjusted_imf_ppm",
    "grid_price",
    "initial_requirement",
    "is_liquidatable",
    "liquidation_price",
    "maintenance_requirement",
    "make_reader",
    "make_venue_reader",
    "notional_quantums",
    "parse_market",
    "parse_subaccount",
    "position_of",
    "quantums_of",
    "simulator_of",
    "validate_address",
    "value",
]

register(VenueProtocol("dydx_v4", make_venue_reader, address=validate_address))
