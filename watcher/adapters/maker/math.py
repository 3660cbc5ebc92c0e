"""dss's integer math the Maker adapter replays: Jug's rpow and drip, Spotter's poke, and ilk names."""

from __future__ import annotations

RAY = 10**27
WAD = 10**18
MAX_UINT256 = 2**256 - 1


def rpow(x: int, n: int, b: int) -> int:
    """x**n in base b, squaring and rounding half up at every step, as dss's rpow (jug.sol) does."""
    if x == 0:
        return b if n == 0 else 0
    z = x if n % 2 else b
    half = b // 2
    n //= 2
    while n:
        x = (x * x + half) // b
        if n % 2:
            z = (z * x + half) // b
        n //= 2
    return z


def drip(rate: int, base: int, duty: int, rho: int, now: int) -> int:
    """The rate Jug.drip would fold in at `now`: rmul(rpow(base + duty, now - rho, RAY), rate), floored."""
    if now <= rho:
        return rate
    return rpow(base + duty, now - rho, RAY) * rate // RAY


def spot_of(val: int, par: int, mat: int) -> int:
    """The spot Spotter.poke files for an OSM value: rdiv(rdiv(val * 1e9, par), mat), each rdiv floor(x*RAY/y)."""
    return val * 10**9 * RAY // par * RAY // mat


def ceil_div(a: int, b: int) -> int:
    """a / b rounded up (non-negative a, positive b)."""
    return -(-a // b)


def ilk_name(ilk: bytes) -> str:
    """A bytes32 ilk as its text name (e.g. "ETH-A"), or hex when it is not printable."""
    raw = ilk.rstrip(b"\0")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return "0x" + ilk.hex()
    return text if text.isprintable() and text else "0x" + ilk.hex()


def ilk_bytes(name: str) -> bytes:
    """An ilk name as the bytes32 the contracts key it by (ASCII, right-padded with zeros)."""
    raw = name.encode("ascii")
    if len(raw) > 32:
        raise ValueError(f"ilk name {name!r} is longer than 32 bytes")
    return raw.ljust(32, b"\0")
