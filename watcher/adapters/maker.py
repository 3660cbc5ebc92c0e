"""Maker (dss) / Sky vaults adapter: vaults through the DssCdpManager, the Vat's own safety check replayed exactly.

A check reads, at one pinned block: per watched owner the manager's first/last/count (a fingerprint of the owner's
vault list, walked once from both ends when it changes); per vault Vat.urns(ilk, urn) (and owns(cdp) for vaults
configured by id); per ilk Vat.ilks, Spotter.ilks (pip, mat), Jug.ilks (duty, rho), the OSM's zzz and hop, and its
`cur` and `nxt` Feeds as storage reads (the OSM's peek/peep are whitelisted); once Spotter.par and Jug.base.

Verdict, exactly as Dog.bark decides it (dss dog.sol): liquidatable iff spot > 0 and ink * spot < art * rate, with
the Vat's STORED spot and rate (bark neither pokes nor drips). Health = floor(ink * spot * WAD / (art * rate)), so
health < WAD iff ink * spot < art * rate.

`Position.health` is the WORSE of: now (the Vat's spot), after a Spotter.poke now (the OSM's current price, when the
Vat's spot lags it), and after the OSM's next price takes effect (nxt, at zzz + hop): the OSM shows that price an
hour ahead, so the user is warned before the Vat sees it. `details` has each and names the one used.

Units: collateral is `ink` (WAD; the Vat counts every gem in 18 decimals) priced at the OSM's value, which is USD
(the ref currency) per gem in WAD; so the base unit is 1e18 = one USD, and a liquidation price found by search is
an OSM value to the wei. The debt is DAI (or USDS: the same Vat debt) = ceil(art * rate / RAY) wei, what a full
repayment costs (DssProxyActions' wipeAll rounds up the same way), priced at par (RAY, shown as WAD).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eth_utils import to_checksum_address

from watcher.abi import Contract, address_word
from watcher.adapters.base import Account, Call, TaggedReader
from watcher.model import BPS, WAD, BlockRef, Leg, Position
from watcher.registry import ChainProtocol, register

VAT = Contract("IMakerVat")
SPOTTER = Contract("IMakerSpotter")
JUG = Contract("IMakerJug")
MANAGER = Contract("IDssCdpManager")
OSM = Contract("IMakerOSM")

RAY = 10**27
#: mainnet DAI, the debt token's address when the protocols/ entry names none
DAI = "0x6B175474E89094C44Da98b954EedeAC495271d0F"
#: storage slots of the OSM's `Feed cur` and `Feed nxt` (osm.sol: wards 0, stopped 1, src|hop|zzz 2, cur 3, nxt 4)
OSM_CUR_SLOT, OSM_NXT_SLOT = 3, 4
_CHEAP, _SLOT = 10_000, 5_000
_U128 = (1 << 128) - 1
_ZERO = "0x" + "00" * 20


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


def _ceil_div(a: int, b: int) -> int:
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
        return _ceil_div(self.tab(), RAY)

    def health_at(self, spot: int) -> int | None:
        """floor(ink * spot * WAD / (art * rate)); None without debt (or at par 0, a debt worth nothing)."""
        tab = self.tab()
        return None if tab == 0 or self.par == 0 else self.ink * spot * WAD // tab

    def current_health(self) -> int | None:
        """Health at the Vat's spot: the figure the protocol's verdict is about."""
        return self.health_at(self.spot)

    def poked_spot(self) -> int | None:
        """The spot a Spotter.poke would file now (the OSM's current value), None without one."""
        return None if self.val is None or self.par == 0 else spot_of(self.val, self.par, self.mat)

    def next_spot(self) -> int | None:
        """The spot once the OSM's next value is poked in, None without one."""
        return None if self.val_next is None or self.par == 0 else spot_of(self.val_next, self.par, self.mat)

    def healths(self) -> dict[str, int | None]:
        """Health now, after a poke now (only when it differs) and at the next price, by name."""
        out: dict[str, int | None] = {"current": self.current_health()}
        poked = self.poked_spot()
        if poked is not None and poked != self.spot:
            out["poked"] = self.health_at(poked)
        nxt = self.next_spot()
        if nxt is not None:
            out["next"] = self.health_at(nxt)
        return out

    def worst(self) -> tuple[str, int | None]:
        """The name and value of the lowest of `healths()`; ("current", None) without debt."""
        hs = {k: v for k, v in self.healths().items() if v is not None}
        if not hs:
            return "current", None
        name = min(hs, key=lambda k: (hs[k], k != "current"))
        return name, hs[name]

    def health(self) -> int | None:
        """The worse of health now and at the OSM's next price (WAD); None without debt."""
        return self.worst()[1]

    def liquidatable(self) -> bool:
        """Dog.bark's test now: spot > 0 and ink * spot < art * rate, with the Vat's stored spot and rate."""
        return self.spot > 0 and self.par > 0 and self.ink * self.spot < self.art * self.rate

    def min_art(self) -> int:
        """The least normalised debt a vault may keep other than 0: art * rate >= dust (Vat/dust)."""
        return _ceil_div(self.dust, self.rate) if self.rate else 0

    def at_time(self, timestamp: int) -> MakerSimulator:
        """The same vault with the rate dripped to `timestamp` by the Jug (one drip from rho, as jug.sol does)."""
        return replace(self, accrue_to=timestamp)

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
        """After locking `amount` more gem (WAD). A vault whose debt is below dust cannot: frob checks dust after
        every change, a pure lock included (Vat/dust), so its ink stays and only a full repayment helps it.
        """
        if asset.lower() != self.gem.lower():
            raise ValueError(f"{asset} is not this vault's gem")
        if 0 < self.tab() < self.dust:
            return self
        return replace(self, ink=self.ink + amount)

    def with_repay(self, asset: str, amount: int) -> MakerSimulator:
        """After repaying `amount` DAI wei: art falls by floor(amount * RAY / rate) (what that DAI pays for in
        frob, as DssProxyActions.wipe computes it), to 0 at most. A remainder below dust is refused by the Vat
        (Vat/dust), so the repayment stops at the least non-dusty art instead; health is then monotone in the
        amount and the least amount reaching a target is either a full repayment or one that leaves >= dust.
        """
        if asset.lower() != self.dai.lower():
            raise ValueError(f"{asset} is not this vault's debt")
        rate = self.rate
        art = self.art - amount * RAY // rate
        if art <= 0:
            art = 0
        elif art * rate < self.dust:
            art = min(self.art, self.min_art())
        return replace(self, art=art)


@dataclass
class _Walk:
    """An owner's vault list in the manager, learned by walking the linked list from both ends."""

    fingerprint: tuple[int, int, int]  #: (first, last, count) the walk belongs to
    fwd: list[int] = field(default_factory=list)  #: ids from `first` onwards
    bwd: list[int] = field(default_factory=list)  #: ids from `last` backwards
    done: bool = False

    def ids(self) -> list[int]:
        """The owner's vault ids, first to last (complete only when `done`)."""
        seen = set(self.fwd)
        return self.fwd + [i for i in reversed(self.bwd) if i not in seen]


@dataclass(frozen=True, slots=True)
class _Vault:
    """What the manager fixes for a cdp when it opens it: its urn handler and ilk."""

    urn: str
    ilk: bytes


class MakerReader(TaggedReader):
    """Reads Maker vaults of a set of owners (through the DssCdpManager) and of configured vault ids."""

    def __init__(
        self,
        protocol: str,
        chain: str,
        cdp_manager: str,
        vat: str,
        spotter: str,
        jug: str,
        accounts: Sequence[Account],
        vaults: Sequence[int] = (),
        dai: str = DAI,
    ) -> None:
        self.protocol = protocol
        self.chain = chain
        self.manager = to_checksum_address(cdp_manager)
        self.vat = to_checksum_address(vat)
        self.spotter = to_checksum_address(spotter)
        self.jug = to_checksum_address(jug)
        self.dai = to_checksum_address(dai)
        self.accounts = list(accounts)
        self.vault_ids = list(dict.fromkeys(int(v) for v in vaults))
        #: accounts (or configured vaults) the last parse could not value, with the reason
        self.skipped: list[tuple[Account, str]] = []
        self._labels = {a.address.lower(): a for a in self.accounts}
        self._walks: dict[str, _Walk] = {}
        # urns and ilks of a cdp never change once opened, so each is learned once.
        self._vaults: dict[int, _Vault] = {}
        self._pips: dict[bytes, str] = {}
        # pips that answer zzz/hop as an OSM (True) or not (False: a DSValue, say), so that a non-OSM pip is not
        # asked again: a reverting read would cost the check a second eth_call to find out which call failed.
        self._is_osm: dict[str, bool] = {}
        self._version = 0
        self._planned = -1
        self._plan: list[tuple[Any, ...]] = []
        self._calls: list[Call] = []

    # --- planning

    def _add(self, tag: tuple[Any, ...], target: str, data: bytes, gas: int = _CHEAP, slot: int | None = None) -> None:
        self._plan.append(tag)
        self._calls.append(Call(target, data, gas, slot))

    def _ids(self) -> list[int]:
        """Every vault id to value: owners' (as far as walked) then configured ones, without repeats."""
        ids: list[int] = []
        for acct in self.accounts:
            walk = self._walks.get(acct.address.lower())
            if walk is not None:
                ids += walk.ids()
        return list(dict.fromkeys([*ids, *self.vault_ids]))

    def calls(self) -> list[Call]:
        """The reads for this round; the same list object while nothing new was learned."""
        if self._planned == self._version:
            return self._calls
        self._planned = self._version
        self._plan, self._calls = [], []
        m = self.manager
        for acct in self.accounts:
            a = acct.address
            for fn in ("first", "last", "count"):
                self._add((fn, a.lower()), m, getattr(MANAGER, fn).encode(a))
            walk = self._walks.get(a.lower())
            if walk is not None and not walk.done:
                for cdp in dict.fromkeys((walk.fwd[-1], walk.bwd[-1])):
                    self._add(("list", cdp), m, MANAGER.list.encode(cdp))
        ids = self._ids()
        for cdp in ids:
            if cdp not in self._vaults:
                self._add(("urn", cdp), m, MANAGER.urns.encode(cdp))
                self._add(("ilk", cdp), m, MANAGER.ilks.encode(cdp))
        for cdp in ids:
            # every vault's owner, each check: a list whose first/last/count look unchanged can still have swapped
            # a middle vault (give one away, receive another), and the owner is who the warning is for
            self._add(("owns", cdp), m, MANAGER.owns.encode(cdp))
        ilks: dict[bytes, None] = {}
        for cdp in ids:
            v = self._vaults.get(cdp)
            if v is not None:
                ilks[v.ilk] = None
                self._add(("vurn", cdp), self.vat, VAT.urns.encode(int.from_bytes(v.ilk, "big"), v.urn))
        if ilks:
            self._add(("par",), self.spotter, SPOTTER.par.encode())
            self._add(("base",), self.jug, JUG.base.encode())
        pips: dict[str, None] = {}
        for ilk in ilks:
            key = int.from_bytes(ilk, "big")
            self._add(("vilk", ilk), self.vat, VAT.ilks.encode(key))
            self._add(("silk", ilk), self.spotter, SPOTTER.ilks.encode(key))
            self._add(("jilk", ilk), self.jug, JUG.ilks.encode(key))
            pip = self._pips.get(ilk)
            if pip is not None and self._is_osm.get(pip, True):
                pips[pip] = None
        for pip in pips:
            # The views tell an OSM from another pip (a DSValue has neither); the Feeds are storage reads.
            self._add(("zzz", pip), pip, OSM.zzz.encode())
            self._add(("hop", pip), pip, OSM.hop.encode())
            self._add(("cur", pip), pip, b"", _SLOT, OSM_CUR_SLOT)
            self._add(("nxt", pip), pip, b"", _SLOT, OSM_NXT_SLOT)
        return self._calls

    # --- answers

    def _learned(self) -> None:
        self._version += 1

    def _owners(self, got: dict[tuple[Any, ...], tuple[bool, bytes]]) -> bool:
        """Check each owner's (first, last, count) and walk one step where needed; True when all is known."""
        complete = True
        for acct in self.accounts:
            a = acct.address.lower()
            fp = tuple(self._required(got, (fn, a), 1)[0] for fn in ("first", "last", "count"))
            walk = self._walks.get(a)
            if walk is None or walk.fingerprint != fp:
                first, last, count = fp
                if (count == 0) != (first == 0) or (count == 0) != (last == 0) or (count == 1 and first != last):
                    raise ValueError(f"first/last/count {fp} of {acct.address} are inconsistent")
                walk = self._walks[a] = _Walk(fp, [first] if count else [], [last] if count else [])  # type: ignore[arg-type]
                walk.done = len(set(walk.ids())) == count
                self._learned()
            elif not walk.done and ("list", walk.fwd[-1]) in got:
                self._step(walk, got, acct.address)
                self._learned()
            complete = complete and walk.done
        return complete

    def _step(self, walk: _Walk, got: dict[tuple[Any, ...], tuple[bool, bytes]], owner: str) -> None:
        """One step from each end of an owner's list; both ends meet when the whole list is known."""
        count = walk.fingerprint[2]
        nxt = self._required(got, ("list", walk.fwd[-1]), 2)[1]
        prv = self._required(got, ("list", walk.bwd[-1]), 2)[0]
        if nxt == 0 or prv == 0:
            raise ValueError(f"the vault list of {owner} ends before its count {count}")
        if nxt not in walk.bwd:
            walk.fwd.append(nxt)
        if prv not in walk.fwd:
            walk.bwd.append(prv)
        n = len(walk.ids())
        if n > count:
            raise ValueError(f"the vault list of {owner} holds more than its count {count}")
        walk.done = n == count or nxt in walk.bwd or prv in walk.fwd
        if walk.done and n != count:
            raise ValueError(f"the vault list of {owner} holds {n} vaults, its count says {count}")

    def _parse(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], block: BlockRef) -> list[Position] | None:
        complete = self._owners(got)
        for acct in self.accounts:
            a = acct.address.lower()
            walk = self._walks.get(a)
            if walk is None or not walk.done:
                continue
            for cdp in walk.ids():
                if ("owns", cdp) in got and address_word(self._required(got, ("owns", cdp), 1)[0]).lower() != a:
                    del self._walks[a]  # the list changed under an unchanged fingerprint: walk it again
                    self._learned()
                    return None
        for cdp in self._ids():
            if cdp in self._vaults or ("urn", cdp) not in got:
                continue
            urn = address_word(self._required(got, ("urn", cdp), 1)[0])
            ilk = self._required(got, ("ilk", cdp), 1)[0].to_bytes(32, "big")
            if urn != _ZERO:  # a zero urn: no such vault (a configured id not opened yet); skipped below
                self._vaults[cdp] = _Vault(urn, ilk)
                self._learned()
        ids = self._ids()
        known = [c for c in ids if c in self._vaults]
        # Another round when this one did not ask for everything the positions need: a list still being walked,
        # vaults or ilks learned just now, or a pip the Spotter newly points to.
        if not complete or any(c not in self._vaults and ("urn", c) not in got for c in ids):
            return None
        if any(("vurn", c) not in got for c in known):
            return None
        stale = False
        for ilk in dict.fromkeys(self._vaults[c].ilk for c in known):
            pip = address_word(self._required(got, ("silk", ilk), 2)[0])
            if self._pips.get(ilk) != pip:
                self._pips[ilk] = pip  # governance can point the Spotter at a new OSM: read that one
                self._learned()
            if ("zzz", pip) in got:
                is_osm = all(ok and len(d) >= 32 for ok, d in (got[("zzz", pip)], got[("hop", pip)]))
                if not is_osm and self._is_osm.get(pip, True):
                    self._learned()  # not an OSM: later checks skip its reads; this one can still value it
                self._is_osm[pip] = is_osm
            elif self._is_osm.get(pip, True):
                stale = True
        return None if stale else self._positions(got, ids, block)

    def _feed(self, got: dict[tuple[Any, ...], tuple[bool, bytes]], tag: tuple[Any, ...]) -> int | None:
        """An OSM Feed {uint128 val; uint128 has} read from storage: val when has == 1, None when has == 0."""
        w = self._required(got, tag, 1)[0]
        val, has = w & _U128, w >> 128
        if has > 1:
            raise ValueError(f"OSM slot {tag} holds has={has}, not an OSM Feed")
        return val if has == 1 else None

    def _positions(
        self, got: dict[tuple[Any, ...], tuple[bool, bytes]], ids: list[int], block: BlockRef
    ) -> list[Position]:
        par = base = 0
        if any(c in self._vaults for c in ids):  # par and base are asked with the first known vault
            [par] = self._required(got, ("par",), 1)
            [base] = self._required(got, ("base",), 1)
            if par == 0:
                raise ValueError("Spotter.par is 0")
        self.skipped = []
        owners: dict[int, str] = {}
        for acct in self.accounts:
            walk = self._walks[acct.address.lower()]
            for cdp in walk.ids():
                owners.setdefault(cdp, acct.address)
        for cdp in self.vault_ids:
            owners[cdp] = address_word(self._required(got, ("owns", cdp), 1)[0])
        out = []
        for cdp in ids:
            vault = self._vaults.get(cdp)
            if vault is None:
                self.skipped.append((Account(_ZERO, f"vault {cdp}"), f"{self.protocol}/{self.chain}: no vault {cdp}"))
                continue
            ilk = vault.ilk
            _, rate, spot, _, dust = self._required(got, ("vilk", ilk), 5)
            if rate == 0:
                raise ValueError(f"ilk {ilk_name(ilk)} is not initialised in the Vat (rate 0)")
            mat = self._required(got, ("silk", ilk), 2)[1]
            if mat == 0:
                raise ValueError(f"Spotter mat of {ilk_name(ilk)} is 0")
            duty, rho = self._required(got, ("jilk", ilk), 2)
            ink, art = self._required(got, ("vurn", cdp), 2)
            pip = self._pips[ilk]
            osm = self._is_osm.get(pip, False)
            val = self._feed(got, ("cur", pip)) if osm else None
            val_next = self._feed(got, ("nxt", pip)) if osm else None
            sim = MakerSimulator(
                gem=pip,
                dai=self.dai,
                ink=ink,
                art=art,
                stored_rate=rate,
                spot=spot,
                dust=dust,
                mat=mat,
                par=par,
                val=val,
                val_next=val_next,
                base=base,
                duty=duty,
                rho=rho,
            )
            extra: dict[str, Any] = {"osm": osm}
            if osm:
                zzz = self._required(got, ("zzz", pip), 1)[0]
                hop = self._required(got, ("hop", pip), 1)[0]
                if zzz >> 64 or hop >> 16:
                    raise ValueError(f"OSM {pip} answers zzz={zzz} hop={hop}, out of their types' range")
                extra.update(next_price=val_next, next_price_at=zzz + hop if val_next is not None else None)
            out.append(self._position(cdp, vault, owners[cdp], sim, block, extra))
        return out

    # --- positions

    def _position(
        self, cdp: int, vault: _Vault, owner: str, sim: MakerSimulator, block: BlockRef, extra: dict[str, Any]
    ) -> Position:
        acct = self._labels.get(owner.lower())
        label = f"{acct.label} #{cdp}" if acct is not None else f"vault {cdp}"
        name = ilk_name(vault.ilk)
        # A price implied by the Vat's spot when the pip has no readable current value (display only).
        price = sim.val if sim.val is not None else sim.spot * sim.mat // RAY * sim.par // RAY // 10**9
        collateral = Leg(sim.gem, name, 18, sim.ink, price, sim.ink * price // WAD, BPS * RAY // sim.mat)
        debt_value = _ceil_div(sim.tab() * sim.par, RAY * RAY)
        debt = Leg(sim.dai, "DAI", 18, sim.debt(), sim.par // 10**9, debt_value)
        source, health = sim.worst()
        healths = sim.healths()
        min_art = sim.min_art()
        details: dict[str, Any] = {
            "market_id": str(cdp),
            "cdp": cdp,
            "ilk": name,
            "urn": vault.urn,
            "owner": owner,
            "ink": sim.ink,
            "art": sim.art,
            "rate": sim.rate,
            "spot": sim.spot,
            "mat": sim.mat,
            "par": sim.par,
            "pip": sim.gem,
            "current_price": sim.val,
            "current_health": healths["current"],
            "poked_health": healths.get("poked"),
            "next_health": healths.get("next"),
            "next_price": None,
            "next_price_at": None,
            "health_source": source,
            # Jug.drip is permissionless: a keeper can drip then bark in one transaction, so the vault is open to
            # liquidation as soon as the rate dripped to this block makes it unsafe (the verdict above is bark's own)
            "dripped_health": sim.at_time(block.timestamp).current_health(),
            "liquidatable_after_drip": sim.at_time(block.timestamp).liquidatable(),
            "dust": sim.dust,
            "dust_dai": _ceil_div(sim.dust, RAY),
            "below_dust": 0 < sim.tab() < sim.dust,
            "full_repay": sim.debt(),
            # The most DAI that can be repaid while the vault keeps >= dust of debt; anything more must repay all.
            "max_partial_repay": (
                max(_ceil_div((sim.art - min_art + 1) * sim.rate, RAY) - 1, 0) if 0 < min_art < sim.art else 0
            ),
            "liquidation": (
                "Dog.bark takes the vault when spot > 0 and ink*spot < art*rate; a partial liquidation (room "
                "under Hole/hole) that would leave 0 < debt < dust takes the whole vault instead"
            ),
            **extra,
        }
        return Position(
            protocol=self.protocol,
            chain=self.chain,
            account=owner,
            label=label,
            collateral=(collateral,),
            debt=(debt,),
            health=health,
            liquidatable=sim.liquidatable(),
            base_unit=WAD,
            base_currency="USD",
            block=block,
            details=details,
            simulator=sim,
        )


def make_reader(dep: Any, accounts: Sequence[Account]) -> MakerReader:
    """A reader for a resolved Maker deployment (watcher.config.Deployment): `address` is the DssCdpManager."""
    missing = [k for k in ("vat", "spot", "jug") if k not in dep.extra]
    if missing:
        raise ValueError(f"deployment {dep.name}: the protocols/ entry lacks {', '.join(missing)}")
    return MakerReader(
        dep.name,
        dep.chain,
        dep.address,
        dep.extra["vat"],
        dep.extra["spot"],
        dep.extra["jug"],
        accounts,
        vaults=dep.vaults,
        dai=dep.extra.get("dai", DAI),
    )


register(ChainProtocol("maker", "cdp_manager", make_reader))
