"""An owner's vault list in the DssCdpManager: read whole through GetCdps, or walked through the manager's list.

Each check asks the manager's first/last/count per owner (a fingerprint of the list). With a GetCdps helper
(`get_cdps`, GET_CDPS in Maker's chainlog) the whole list, with each vault's urn and ilk, comes in one call:
asked in the same round as the fingerprint when nothing is known yet, and in the next round when the fingerprint
changed. Without one, the manager's linked list is walked one step from each end per round (two vaults a round).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_utils import to_checksum_address

from watcher.abi import Contract
from watcher.adapters.base import Account, Call

MANAGER = Contract("IDssCdpManager")
GET_CDPS = Contract("IMakerGetCdps")
_CHEAP = 10_000
#: gas per vault GetCdps spends (three calls into the manager, four cold slots) and a floor for an unknown list
_GAS_PER_VAULT, _GAS_UNKNOWN = 15_000, 2_000_000
#: the most vaults an owner may have for the manager's list to be walked (two a round) within a check's rounds
WALK_LIMIT = 16

Got = dict[tuple[Any, ...], tuple[bool, bytes]]


@dataclass(frozen=True, slots=True)
class Vault:
    """What the manager fixes for a cdp when it opens it: its urn handler and ilk."""

    urn: str
    ilk: bytes


@dataclass
class Walk:
    """An owner's vault list in the manager, learned whole (GetCdps) or by walking the list from both ends."""

    fingerprint: tuple[int, int, int]  #: (first, last, count) the list belongs to
    fwd: list[int] = field(default_factory=list)  #: ids from `first` onwards
    bwd: list[int] = field(default_factory=list)  #: ids from `last` backwards
    done: bool = False
    #: the list before the fingerprint changed: its vaults are still read while GetCdps re-reads the list, so
    #: that the round that brings the new list already holds the state of every vault that stayed
    previous: list[int] = field(default_factory=list)

    def ids(self) -> list[int]:
        """The owner's vault ids, first to last (complete only when `done`)."""
        seen = set(self.fwd)
        return self.fwd + [i for i in reversed(self.bwd) if i not in seen]


def _check(fp: tuple[int, int, int], owner: str) -> None:
    first, last, count = fp
    if (count == 0) != (first == 0) or (count == 0) != (last == 0) or (count == 1 and first != last):
        raise ValueError(f"first/last/count {fp} of {owner} are inconsistent")


class OwnerLists:
    """Plans and parses the reads that keep every watched owner's vault list known."""

    def __init__(self, manager: str, get_cdps: str | None, owners: list[Account]) -> None:
        self.manager = manager
        self.get_cdps = get_cdps
        self.owners = owners
        self.walks: dict[str, Walk] = {}
        self.counts: dict[str, int] = {}  #: the last count seen per owner: the gas estimate of its GetCdps call
        #: owners with more vaults than a walk reads in one check, without a GetCdps to read them whole
        self.too_many: dict[str, int] = {}

    def plan(self) -> list[tuple[tuple[Any, ...], Call]]:
        """This round's (tag, call) pairs for the owners' lists."""
        out: list[tuple[tuple[Any, ...], Call]] = []
        m = self.manager
        for acct in self.owners:
            a = acct.address
            for fn in ("first", "last", "count"):
                out.append(((fn, a.lower()), Call(m, getattr(MANAGER, fn).encode(a), _CHEAP)))
            walk = self.walks.get(a.lower())
            if walk is not None and walk.done:
                continue
            if self.get_cdps is not None:
                n = self.counts.get(a.lower())
                gas = _GAS_UNKNOWN if n is None else 50_000 + _GAS_PER_VAULT * n
                out.append((("cdps", a.lower()), Call(self.get_cdps, GET_CDPS.getCdpsAsc.encode(m, a), gas)))
            elif walk is not None:
                for cdp in dict.fromkeys((walk.fwd[-1], walk.bwd[-1])):
                    out.append((("list", cdp), Call(m, MANAGER.list.encode(cdp), _CHEAP)))
        return out

    def parse(self, got: Got, required: Any, vaults: dict[int, Vault]) -> tuple[bool, bool]:
        """Update each owner's list from this round; (all complete, something learned). GetCdps' urns and ilks
        go into `vaults`. `required(got, tag, n)` gives a call's first n words or raises.
        """
        complete, learned = True, False
        for acct in self.owners:
            a = acct.address.lower()
            fp = tuple(required(got, (fn, a), 1)[0] for fn in ("first", "last", "count"))
            self.counts[a] = fp[2]
            walk = self.walks.get(a)
            if walk is None or walk.fingerprint != fp:
                _check(fp, acct.address)  # type: ignore[arg-type]
                first, last, count = fp
                old = walk.ids() if walk is not None and walk.done else []
                walk = self.walks[a] = Walk(fp, [first] if count else [], [last] if count else [], previous=old)  # type: ignore[arg-type]
                walk.done = len(set(walk.ids())) == count
                learned = True
                self.too_many.pop(a, None)
                if self.get_cdps is None and count > WALK_LIMIT:
                    # walking would take more rounds than a check has: say so instead of an opaque unknown
                    self.too_many[a] = count
                    walk.fwd, walk.bwd, walk.done = [], [], True
                if ("cdps", a) in got:  # asked with the fingerprint: the list, urns and ilks in this round
                    self._whole(walk, got, acct.address, vaults)
            elif not walk.done and ("cdps", a) in got:
                self._whole(walk, got, acct.address, vaults)
                learned = True
            elif not walk.done and ("list", walk.fwd[-1]) in got:
                self._step(walk, got, acct.address, required)
                learned = True
            complete = complete and walk.done
        return complete, learned

    def _whole(self, walk: Walk, got: Got, owner: str, vaults: dict[int, Vault]) -> None:
        """The list from GetCdps.getCdpsAsc, checked against the fingerprint read at the same block."""
        ok, data = got[("cdps", owner.lower())]
        if not ok:
            raise ValueError(f"GetCdps.getCdpsAsc reverted for {owner}")
        ids, urns, ilks = GET_CDPS.getCdpsAsc.decode(data)
        first, last, count = walk.fingerprint
        if not (len(ids) == len(urns) == len(ilks) == count):
            raise ValueError(f"GetCdps gave {len(ids)} vaults for {owner}, the manager's count is {count}")
        if count and (ids[0] != first or ids[-1] != last or len(set(ids)) != count or 0 in ids):
            raise ValueError(f"GetCdps' list of {owner} does not run from first {first} to last {last}")
        for cdp, urn, ilk in zip(ids, urns, ilks, strict=True):
            if cdp not in vaults:
                vaults[int(cdp)] = Vault(to_checksum_address(urn), bytes(ilk))
        walk.fwd, walk.bwd, walk.done = [int(i) for i in ids], [], True

    def _step(self, walk: Walk, got: Got, owner: str, required: Any) -> None:
        """One step from each end of an owner's list; both ends meet when the whole list is known."""
        count = walk.fingerprint[2]
        nxt = required(got, ("list", walk.fwd[-1]), 2)[1]
        prv = required(got, ("list", walk.bwd[-1]), 2)[0]
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

    def ids(self) -> list[int]:
        """Every owner's vault ids as far as known, owner by owner."""
        out: list[int] = []
        for acct in self.owners:
            walk = self.walks.get(acct.address.lower())
            if walk is not None:
                out += walk.ids() if walk.done or self.get_cdps is None else [*walk.previous, *walk.ids()]
        return list(dict.fromkeys(out))

    def forget(self, owner: str) -> None:
        """Drop an owner's list (a vault in it changed owner under an unchanged fingerprint): read it again."""
        self.walks.pop(owner.lower(), None)
