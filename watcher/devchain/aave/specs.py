"""What a local Aave market is made of: versions, reserves, the eMode category, positions to open, gas limits."""

from __future__ import annotations

from dataclasses import dataclass, field

VERSIONS = ("3.0", "3.6")
ZERO = "0x0000000000000000000000000000000000000000"
MAX_UINT = 2**256 - 1
RAY = 10**27
BASE_CURRENCY_UNIT = 10**8
VARIABLE_RATE = 2

# Gas limits are explicit so bulk sends skip eth_estimateGas; each is ~2-3x what the call uses here.
GAS_DEPLOY = 8_000_000
GAS_ADMIN = 3_000_000
GAS_INIT_RESERVE = 6_000_000
GAS_ERC20 = 150_000
GAS_POOL = 1_500_000
_USER_ETH = 1_000 * 10**18


@dataclass(frozen=True, slots=True)
class ReserveSpec:
    """A listed asset: mock token decimals, USD price (8 decimals) and risk parameters in bps."""

    symbol: str
    decimals: int
    price: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int


@dataclass(frozen=True, slots=True)
class EModeSpec:
    """An eMode category and the assets that are collateral and borrowable in it."""

    category_id: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    label: str
    assets: tuple[str, ...]


RESERVES: tuple[ReserveSpec, ...] = (
    ReserveSpec("WETH", 18, 2_000 * 10**8, 8000, 8250, 10500),
    ReserveSpec("WBTC", 8, 60_000 * 10**8, 7000, 7500, 10650),
    ReserveSpec("USDC", 6, 1 * 10**8, 7700, 8000, 10450),
    ReserveSpec("DAI", 18, 1 * 10**8, 7500, 7800, 10500),
)
EMODE_STABLECOINS = EModeSpec(1, 9300, 9500, 10100, "stablecoins", ("USDC", "DAI"))
RESERVE_FACTOR_BPS = 1000
# Same curve for both versions: optimal usage 90%, base 0, slope1 4%, slope2 60% (v3.6 takes bps).
RATE_BPS = (9000, 0, 400, 6000)


@dataclass(frozen=True, slots=True)
class PositionSpec:
    """A position to open: amounts in token base units per symbol, and an optional eMode category."""

    user: str
    supplies: dict[str, int]
    borrows: dict[str, int] = field(default_factory=dict)
    emode: int = 0
