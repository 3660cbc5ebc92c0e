"""Exact replay of a Maker vault's liquidation test, with what a keeper can do first in the same transaction."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from watcher.adapters.maker.keeper import JUG_DRIP, OSM_POKE, SPOTTER_POKE, Bark, DogState, bark
from watcher.adapters.maker.math import WAD, ceil_div, drip, spot_of

#: health names of the states a keeper reaches, by the steps taken
_NAMES = {
    (): "current",
    (JUG_DRIP,): "dripped",
    (SPOTTER_POKE,): "poked",
    (SPOTTER_POKE, JUG_DRIP): "poked+dripped",
    (OSM_POKE, SPOTTER_POKE): "osm_poked",
    (OSM_POKE, SPOTTER_POKE, JUG_DRIP): "osm_poked+dripped",
}


@dataclass(frozen=True, slots=True)
class KeeperView:
    """The cheapest way a keeper liquidates the vault now: its pre-steps and bark's outcome after them.

    `steps` is None when no keeper path makes the vault unsafe; otherwise bark succeeds after them when
    `bark.revert` is None, and is refused for a system reason (Hole full, breaker, voided OSM) when it is not.
    """

    steps: tuple[str, ...] | None
    bark: Bark


@dataclass(frozen=True, slots=True)
class MakerSimulator:
    """Exact replay of the Vat's safety check for one vault, with prices, collateral, debt or time changed."""

    gem: str  #: the collateral leg's asset id (the ilk's pip address)
    dai: str  #: the debt leg's asset id
    ink: int  #: WAD
    art: int  #: normalised debt, WAD
    stored_rate: int  #: Vat.ilks rate at the read block, RAY
    spot: int  #: Vat.ilks spot, RAY
    dust: int  #: RAD
    mat: int  #: Spotter.ilks mat, RAY
    par: int  #: Spotter.par, RAY
    val: int | None  #: the OSM's current value (WAD), None when it has none
    val_next: int | None  #: the OSM's next value (WAD), None when it has none
    base: int  #: Jug.base, RAY per second
    duty: int  #: Jug.ilks duty, RAY per second
    rho: int  #: Jug.ilks rho, when the stored rate was last dripped
    accrue_to: int | None = None  #: None: the Vat's stored rate; otherwise rate dripped to this time
    now: int = 0  #: the read block's timestamp: a keeper's drip accrues at least to it
    gem_conv: int = 1  #: 10**(18 - dec) of the ilk's GemJoin: one token base unit in Vat gem units
    dog: DogState | None = None  #: the Dog's limits and the Clipper's breaker; None when not read
    osm: bool = False  #: the pip is an OSM whose feeds were read (a Clipper then needs its current value)
    osm_stopped: bool = False  #: OSM.stopped: its poke reverts, so its next value does not take effect
    next_at: int | None = None  #: zzz + hop: from then on anyone can OSM.poke the next value in
    keeper_rate: int = 0  #: the rate after a drip now (filled in from the fields when 0)

    def __post_init__(self) -> None:
        if self.keeper_rate == 0:
            t = max(self.now, self.accrue_to or 0)
            object.__setattr__(self, "keeper_rate", drip(self.stored_rate, self.base, self.duty, self.rho, t))

    @property
    def rate(self) -> int:
        """The rate the Vat holds, or would hold after a drip at `accrue_to`."""
        if self.accrue_to is None:
            return self.stored_rate
        return drip(self.stored_rate, self.base, self.duty, self.rho, self.accrue_to)

    def tab(self) -> int:
        """art * rate, RAD: what the Vat compares with ink * spot."""
        return self.art * self.rate

    def debt(self) -> int:
        """The debt in DAI wei, rounded up: what repaying it all costs."""
        return ceil_div(self.tab(), 10**27)

    def health_at(self, spot: int, rate: int | None = None) -> int | None:
        """floor(ink * spot * WAD / (art * rate)); None without debt (or at par 0, a debt worth nothing)."""
        tab = self.art * (self.rate if rate is None else rate)
        return None if tab == 0 or self.par == 0 else self.ink * spot * WAD // tab

    def current_health(self) -> int | None:
        """Health at the Vat's spot and rate: the figure bark's own first test is about."""
        return self.health_at(self.spot)

    def poked_spot(self) -> int | None:
        """The spot a Spotter.poke would file now: from the OSM's current value, 0 when it has none (a voided
        OSM), None when the pip's value cannot be read.
        """
        if self.par == 0:
            return None
        if self.val is None:
            return 0 if self.osm else None
        return spot_of(self.val, self.par, self.mat)

    def next_spot(self) -> int | None:
        """The spot once the OSM's next value is poked in, None without one."""
        return None if self.val_next is None or self.par == 0 else spot_of(self.val_next, self.par, self.mat)

    def osm_pokeable(self) -> bool:
        """Whether a keeper can OSM.poke the next value in now (hop passed, not stopped, a next value held)."""
        return (
            self.osm
            and not self.osm_stopped
            and self.val_next is not None
            and self.next_at is not None
            and self.now >= self.next_at
        )

    def _paths(self) -> Iterator[tuple[tuple[str, ...], int, int, tuple[bool, int] | None]]:
        """(steps, spot, rate, the pip's peek after them) for every state a keeper reaches in one transaction."""
        cur = (self.val is not None, self.val or 0) if self.osm else None
        spots: list[tuple[tuple[str, ...], int, tuple[bool, int] | None]] = [((), self.spot, cur)]
        poked = self.poked_spot()
        if poked is not None and poked != self.spot:
            spots.append(((SPOTTER_POKE,), poked, cur))
        nxt = self.next_spot()
        if self.osm_pokeable() and nxt is not None and nxt != poked:
            spots.append(((OSM_POKE, SPOTTER_POKE), nxt, (True, self.val_next or 0)))
        rates = [((), self.rate)]
        if self.keeper_rate != self.rate:
            rates.append(((JUG_DRIP,), self.keeper_rate))
        for steps, spot, feed in spots:
            for extra, rate in rates:
                yield steps + extra, spot, rate, feed

    def _unsafe(self, spot: int, rate: int) -> bool:
        return spot > 0 and self.par > 0 and self.ink * spot < self.art * rate

    def healths(self) -> dict[str, int | None]:
        """Health now, in every state a keeper reaches now (only where it differs), and at the next price."""
        out: dict[str, int | None] = {}
        for steps, spot, rate, _ in self._paths():
            out[_NAMES[steps]] = self.health_at(spot, rate)
        nxt = self.next_spot()
        if nxt is not None:
            out["next"] = self.health_at(nxt, self.keeper_rate)
        return out

    def worst(self) -> tuple[str, int | None]:
        """The name and value of the lowest of `healths()`; ("current", None) without debt."""
        hs = {k: v for k, v in self.healths().items() if v is not None}
        if not hs:
            return "current", None
        name = min(hs, key=lambda k: (hs[k], k != "current"))
        return name, hs[name]

    def health(self) -> int | None:
        """The worst health a keeper can reach now or the OSM's next price brings (WAD); None without debt."""
        return self.worst()[1]

    def unsafe(self) -> bool:
        """Bark's own test on the Vat as it stands: spot > 0 and ink * spot < art * rate (stored spot and rate)."""
        return self._unsafe(self.spot, self.rate)

    def keeper(self) -> KeeperView:
        """The fewest pre-steps after which bark succeeds; else the fewest that make the vault unsafe, with the
        reason bark still refuses; steps None when no path makes it unsafe.
        """
        blocked: KeeperView | None = None
        for steps, spot, rate, feed in self._paths():
            if not self._unsafe(spot, rate):
                continue
            out = bark(self.ink, self.art, rate, spot, self.dust, self.dog, feed, self.par)
            if out.revert is None:
                return KeeperView(steps, out)
            if blocked is None:
                blocked = KeeperView(steps, out)
        return blocked or KeeperView(None, Bark("Dog/not-unsafe"))

    def liquidatable(self) -> bool:
        """The verdict a user sees: a keeper can make the vault unsafe now (bark may still wait for capacity)."""
        return any(self._unsafe(spot, rate) for _, spot, rate, _ in self._paths())

    def min_art(self) -> int:
        """The least normalised debt a vault may keep other than 0: art * rate >= dust (Vat/dust)."""
        return ceil_div(self.dust, self.rate) if self.rate else 0

    def at_time(self, timestamp: int) -> MakerSimulator:
        """The same vault with the rate dripped to `timestamp` by the Jug (one drip from rho, as jug.sol does)."""
        return replace(self, accrue_to=timestamp, keeper_rate=0)

    def with_price(self, asset: str, price: int) -> MakerSimulator:
        """The gem's OSM value (WAD) now and next, poked into spot; or DAI's price (par, WAD), re-poked."""
        if asset.lower() == self.gem.lower():
            return replace(self, val=price, val_next=price, spot=spot_of(price, self.par, self.mat))
        if asset.lower() == self.dai.lower():
            par = price * 10**9
            if par == 0:
                # Spotter.poke would divide by 0; as par -> 0 spot grows without bound: no debt worth counting.
                return replace(self, par=0)
            # Without a current OSM value a poke cannot be replayed; the stored spot then stays.
            spot = spot_of(self.val, par, self.mat) if self.val is not None else self.spot
            return replace(self, par=par, spot=spot)
        raise ValueError(f"{asset} is neither this vault's gem nor its debt")

    def with_supply(self, asset: str, amount: int) -> MakerSimulator:
        """After sending `amount` token base units to the GemJoin and locking them: ink grows by
        amount * 10**(18 - dec), the join's own conversion. A vault whose debt is below dust cannot: frob checks
        dust after every change, a pure lock included (Vat/dust), so its ink stays and only a full repayment helps.
        """
        if asset.lower() != self.gem.lower():
            raise ValueError(f"{asset} is not this vault's gem")
        if 0 < self.tab() < self.dust:
            return self
        return replace(self, ink=self.ink + amount * self.gem_conv)

    def with_repay(self, asset: str, amount: int) -> MakerSimulator:
        """After repaying `amount` DAI wei: art falls by floor(amount * RAY / rate) (what that DAI pays for in
        frob, as DssProxyActions.wipe computes it), to 0 at most. A remainder below dust is refused by the Vat
        (Vat/dust), so the repayment stops at the least non-dusty art instead; health is then monotone in the
        amount and the least amount reaching a target is either a full repayment or one that leaves >= dust.
        """
        if asset.lower() != self.dai.lower():
            raise ValueError(f"{asset} is not this vault's debt")
        rate = self.rate
        art = self.art - amount * 10**27 // rate
        if art <= 0:
            art = 0
        elif art * rate < self.dust:
            art = min(self.art, self.min_art())
        return replace(self, art=art)
