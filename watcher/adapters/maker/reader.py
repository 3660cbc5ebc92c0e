"""The Maker reader: plans one round of reads for every watched owner and vault, and parses them into positions.

Per check, at one pinned block: the owners' vault lists (vaults.py: GetCdps or the manager's list); per vault
owns(cdp) and Vat.urns; per ilk Vat.ilks, Spotter.ilks (pip, mat), Jug.ilks (duty, rho) and, where configured,
Dog.ilks (clip, chop, hole, dirt) with the Clipper's stopped and buf, and the GemJoin's dec (through the
IlkRegistry, once); once Spotter.par, Jug.base and Dog.live/Hole/Dirt; per OSM zzz, hop, stopped and its `cur` and
`nxt` Feeds as storage reads (the OSM's peek/peep are whitelisted). Urns, ilks and decimals, fixed once a vault
or join exists, are learned once; pips and clips are re-read each check (governance can change them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_utils import to_checksum_address

from watcher.abi import Contract, address_word
from watcher.adapters.base import Account, Call, TaggedReader
from watcher.adapters.maker.keeper import DogState
from watcher.adapters.maker.math import ilk_name
from watcher.adapters.maker.position import build_position
from watcher.adapters.maker.simulator import MakerSimulator
from watcher.adapters.maker.vaults import MANAGER, WALK_LIMIT, Got, OwnerLists, Vault
from watcher.model import BlockRef, Position

VAT = Contract("IMakerVat")
SPOTTER = Contract("IMakerSpotter")
JUG = Contract("IMakerJug")
OSM = Contract("IMakerOSM")
DOG = Contract("IMakerDog")
CLIPPER = Contract("IMakerClipper")
ILK_REGISTRY = Contract("IMakerIlkRegistry")
GEM_JOIN = Contract("IMakerGemJoin")

#: mainnet DAI, the debt token's address when the protocols/ entry names none
DAI = "0x6B175474E89094C44Da98b954EedeAC495271d0F"
#: storage slots of the OSM's `Feed cur` and `Feed nxt` (osm.sol: wards 0, stopped 1, src|hop|zzz 2, cur 3, nxt 4)
OSM_CUR_SLOT, OSM_NXT_SLOT = 3, 4
_CHEAP, _SLOT = 10_000, 5_000
_U128 = (1 << 128) - 1
_ZERO = "0x" + "00" * 20


class MakerReader(TaggedReader):
    """Reads Maker vaults of a set of owners (through the DssCdpManager) and of configured vault ids."""

    _gas = _CHEAP

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
        *,
        dog: str | None = None,
        get_cdps: str | None = None,
        ilk_registry: str | None = None,
    ) -> None:
        self.protocol = protocol
        self.chain = chain
        self.manager = to_checksum_address(cdp_manager)
        self.vat = to_checksum_address(vat)
        self.spotter = to_checksum_address(spotter)
        self.jug = to_checksum_address(jug)
        self.dai = to_checksum_address(dai)
        self.dog = to_checksum_address(dog) if dog else None
        self.get_cdps = to_checksum_address(get_cdps) if get_cdps else None
        self.ilk_registry = to_checksum_address(ilk_registry) if ilk_registry else None
        self.accounts = list(accounts)
        self.vault_ids = list(dict.fromkeys(int(v) for v in vaults))
        #: accounts (or configured vaults) the last parse could not value, with the reason
        self.skipped: list[tuple[Account, str]] = []
        self._labels = {a.address.lower(): a for a in self.accounts}
        self.lists = OwnerLists(self.manager, self.get_cdps, self.accounts)
        # urns and ilks of a cdp never change once opened, so each is learned once.
        self._vaults: dict[int, Vault] = {}
        self._pips: dict[bytes, str] = {}
        self._clips: dict[bytes, str] = {}
        # each ilk's GemJoin (None: the registry has none) and each join's decimals (None: not a readable join)
        self._joins: dict[bytes, str | None] = {}
        self._decs: dict[str, int | None] = {}
        # pips that answer zzz/hop as an OSM (True) or not (False: a DSValue, say), so that a non-OSM pip is not
        # asked again: a reverting read would cost the check a second eth_call to find out which call failed.
        self._is_osm: dict[str, bool] = {}
        self._version = 0

    # --- planning

    def _ids(self) -> list[int]:
        """Every vault id to value: owners' (as far as known) then configured ones, without repeats."""
        return list(dict.fromkeys([*self.lists.ids(), *self.vault_ids]))

    def calls(self) -> list[Call]:
        """The reads for this round; the same list object while nothing new was learned."""
        if not self._replan(self._version):
            return self._calls
        m = self.manager
        for tag, call in self.lists.plan():
            self._add_call(tag, call)
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
            if self.dog:
                for fn in ("live", "Hole", "Dirt"):
                    self._add(("dog", fn), self.dog, getattr(DOG, fn).encode())
        pips: dict[str, None] = {}
        clips: dict[str, None] = {}
        for ilk in ilks:
            key = int.from_bytes(ilk, "big")
            self._add(("vilk", ilk), self.vat, VAT.ilks.encode(key))
            self._add(("silk", ilk), self.spotter, SPOTTER.ilks.encode(key))
            self._add(("jilk", ilk), self.jug, JUG.ilks.encode(key))
            if self.dog:
                self._add(("dilk", ilk), self.dog, DOG.ilks.encode(key))
                clip = self._clips.get(ilk)
                if clip is not None and clip != _ZERO:
                    clips[clip] = None
            if self.ilk_registry and ilk not in self._joins:
                self._add(("join", ilk), self.ilk_registry, ILK_REGISTRY.join.encode(key))
            join = self._joins.get(ilk)
            if join is not None and join not in self._decs:
                self._add(("dec", join), join, GEM_JOIN.dec.encode())
            pip = self._pips.get(ilk)
            if pip is not None and self._is_osm.get(pip, True):
                pips[pip] = None
        for clip in clips:
            self._add(("cstop", clip), clip, CLIPPER.stopped.encode())
            self._add(("buf", clip), clip, CLIPPER.buf.encode())
        for pip in pips:
            # The views tell an OSM from another pip (a DSValue has neither); the Feeds are storage reads.
            self._add(("zzz", pip), pip, OSM.zzz.encode())
            self._add(("hop", pip), pip, OSM.hop.encode())
            self._add(("ostop", pip), pip, OSM.stopped.encode())
            self._add(("cur", pip), pip, b"", _SLOT, OSM_CUR_SLOT)
            self._add(("nxt", pip), pip, b"", _SLOT, OSM_NXT_SLOT)
        return self._calls

    # --- answers

    def _learned(self) -> None:
        self._version += 1

    def _parse(self, got: Got, block: BlockRef) -> list[Position] | None:
        complete, learned = self.lists.parse(got, self._required, self._vaults)
        if learned:
            self._learned()
        for acct in self.accounts:
            a = acct.address.lower()
            walk = self.lists.walks.get(a)
            if walk is None or not walk.done:
                continue
            for cdp in walk.ids():
                if ("owns", cdp) in got and address_word(self._required(got, ("owns", cdp), 1)[0]).lower() != a:
                    self.lists.forget(a)  # the list changed under an unchanged fingerprint: read it again
                    self._learned()
                    return None
        for cdp in self._ids():
            if cdp in self._vaults or ("urn", cdp) not in got:
                continue
            urn = address_word(self._required(got, ("urn", cdp), 1)[0])
            ilk = self._required(got, ("ilk", cdp), 1)[0].to_bytes(32, "big")
            if urn != _ZERO:  # a zero urn: no such vault (a configured id not opened yet); skipped below
                self._vaults[cdp] = Vault(urn, ilk)
                self._learned()
        ids = self._ids()
        known = [c for c in ids if c in self._vaults]
        # Another round when this one did not ask for everything the positions need: a list still being read,
        # vaults or ilks learned just now, or a pip, clip or join newly pointed to.
        if not complete or any(c not in self._vaults and ("urn", c) not in got for c in ids):
            return None
        if any(("vurn", c) not in got for c in known):
            return None
        stale = False
        for ilk in dict.fromkeys(self._vaults[c].ilk for c in known):
            stale |= self._ilk_feeds(got, ilk)
        return None if stale else self._positions(got, ids, block)

    def _ilk_feeds(self, got: Got, ilk: bytes) -> bool:
        """Learn an ilk's pip, clip and join from this round; True when their reads are still to be asked."""
        stale = False
        pip = address_word(self._required(got, ("silk", ilk), 2)[0])
        if self._pips.get(ilk) != pip:
            self._pips[ilk] = pip  # governance can point the Spotter at a new OSM: read that one
            self._learned()
        if ("zzz", pip) in got:
            is_osm = all(ok and len(d) >= 32 for ok, d in (got[("zzz", pip)], got[("hop", pip)], got[("ostop", pip)]))
            if not is_osm and self._is_osm.get(pip, True):
                self._learned()  # not an OSM: later checks skip its reads; this one can still value it
            self._is_osm[pip] = is_osm
        elif self._is_osm.get(pip, True):
            stale = True
        if self.dog:
            clip = address_word(self._required(got, ("dilk", ilk), 1)[0])
            if self._clips.get(ilk) != clip:
                self._clips[ilk] = clip
                self._learned()
            stale |= clip != _ZERO and ("cstop", clip) not in got
        if ("join", ilk) in got:
            ok, data = got[("join", ilk)]
            join = address_word(int.from_bytes(data[:32], "big")) if ok and len(data) >= 32 else _ZERO
            self._joins[ilk] = None if join == _ZERO else join
            self._learned()
        join = self._joins.get(ilk)
        if join is not None and join not in self._decs:
            if ("dec", join) in got:
                ok, data = got[("dec", join)]
                dec = int.from_bytes(data[:32], "big") if ok and len(data) >= 32 else None
                self._decs[join] = dec if dec is not None and dec <= 18 else None
                self._learned()
            else:
                stale = True
        return stale

    def _feed(self, got: Got, tag: tuple[Any, ...]) -> int | None:
        """An OSM Feed {uint128 val; uint128 has} read from storage: val when has == 1, None when has == 0."""
        w = self._required(got, tag, 1)[0]
        val, has = w & _U128, w >> 128
        if has > 1:
            raise ValueError(f"OSM slot {tag} holds has={has}, not an OSM Feed")
        return val if has == 1 else None

    def _dog(self, got: Got, ilk: bytes) -> DogState | None:
        if not self.dog:
            return None
        live, hole_all, dirt_all = (self._required(got, ("dog", fn), 1)[0] for fn in ("live", "Hole", "Dirt"))
        clip_w, chop, hole, dirt = self._required(got, ("dilk", ilk), 4)
        clip = address_word(clip_w)
        stopped, buf = 0, 10**27
        if clip != _ZERO:
            [stopped] = self._required(got, ("cstop", clip), 1)
            [buf] = self._required(got, ("buf", clip), 1)
        return DogState(live, hole_all, dirt_all, hole, dirt, chop, clip, stopped, buf)

    def _positions(self, got: Got, ids: list[int], block: BlockRef) -> list[Position]:
        par = base = 0
        if any(c in self._vaults for c in ids):  # par and base are asked with the first known vault
            [par] = self._required(got, ("par",), 1)
            [base] = self._required(got, ("base",), 1)
            if par == 0:
                raise ValueError("Spotter.par is 0")
        self.skipped = []
        for acct in self.accounts:
            n = self.lists.too_many.get(acct.address.lower())
            if n is not None:
                why = (
                    f"{self.protocol}/{self.chain}: {acct.address} owns {n} vaults, more than the "
                    f"{WALK_LIMIT} the DssCdpManager's list can be walked for in one check: configure get_cdps "
                    "(GET_CDPS in Maker's chainlog) to read them in one call"
                )
                self.skipped.append((acct, why))
        owners: dict[int, str] = {}
        for acct in self.accounts:
            for cdp in self.lists.walks[acct.address.lower()].ids():
                owners.setdefault(cdp, acct.address)
        for cdp in self.vault_ids:
            owners[cdp] = address_word(self._required(got, ("owns", cdp), 1)[0])
        out = []
        for cdp in ids:
            vault = self._vaults.get(cdp)
            if vault is None:
                self.skipped.append((Account(_ZERO, f"vault {cdp}"), f"{self.protocol}/{self.chain}: no vault {cdp}"))
                continue
            out.append(self._vault_position(got, cdp, vault, owners[cdp], par, base, block))
        return out

    def _vault_position(
        self, got: Got, cdp: int, vault: Vault, owner: str, par: int, base: int, block: BlockRef
    ) -> Position:
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
        extra: dict[str, Any] = {"osm": osm}
        next_at, stopped = None, False
        val = val_next = None
        if osm:
            val, val_next = self._feed(got, ("cur", pip)), self._feed(got, ("nxt", pip))
            zzz = self._required(got, ("zzz", pip), 1)[0]
            hop = self._required(got, ("hop", pip), 1)[0]
            stopped = self._required(got, ("ostop", pip), 1)[0] != 0
            if zzz >> 64 or hop >> 16:
                raise ValueError(f"OSM {pip} answers zzz={zzz} hop={hop}, out of their types' range")
            next_at = zzz + hop if val_next is not None else None
            extra.update(next_price=val_next, next_price_at=next_at, osm_stopped=stopped)
        join = self._joins.get(ilk)
        dec = self._decs.get(join) if join is not None else None
        extra.update(join=join, gem_decimals=18 if dec is None else dec, gem_decimals_read=dec is not None)
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
            now=block.timestamp,
            gem_conv=10 ** (18 - (18 if dec is None else dec)),
            dog=self._dog(got, ilk),
            osm=osm,
            osm_stopped=stopped,
            next_at=next_at,
        )
        acct = self._labels.get(owner.lower())
        label = f"{acct.label} #{cdp}" if acct is not None else f"vault {cdp}"
        return build_position(self.protocol, self.chain, cdp, vault, owner, label, sim, block, extra)


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
        dog=dep.extra.get("dog"),
        get_cdps=dep.extra.get("get_cdps"),
        ilk_registry=dep.extra.get("ilk_registry"),
    )
