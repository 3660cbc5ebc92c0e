"""A Maker (dss) STAND-IN system on a local chain: our own MakerStandIn.sol and MakerLiquidationStandIn.sol, not
MakerDAO's contracts.

The stand-ins (Vat, Spotter, Jug, OSM, DssCdpManager, Dog, Clipper, GetCdps, GemJoin, IlkRegistry) expose dss's
view ABI with its integer math, and admin setters: tests open vaults through the manager, then place ink/art in
the Vat, rates, OSM values and the Dog's limits directly, and call Dog.bark as a keeper would.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract

from watcher.devchain.deploy import Calldata, Tx, deploy_bytecode, revert_reason, send_txs
from watcher.devchain.solc import compile_standard_json, contract_output

_SOL = Path(__file__).resolve().parent / "sol"
_SOURCES = {
    "MakerStandIn.sol": ("VatStandIn", "SpotterStandIn", "JugStandIn", "OsmStandIn", "DssCdpManagerStandIn"),
    "MakerLiquidationStandIn.sol": (
        "DogStandIn",
        "ClipperStandIn",
        "GetCdpsStandIn",
        "GemJoinStandIn",
        "IlkRegistryStandIn",
    ),
}
GAS = 500_000
WAD, RAY = 10**18, 10**27
RAD = WAD * RAY


def _spotter_file(ilk: bytes, what: str, data: str | int) -> str:
    """Calldata of file(bytes32, bytes32, address|uint256) (Spotter, Dog): Calldata cannot tell the overloads apart."""
    kind = "address" if isinstance(data, str) else "uint256"
    sig = f"file(bytes32,bytes32,{kind})"
    return "0x" + (keccak(text=sig)[:4] + abi_encode(["bytes32", "bytes32", kind], [ilk, what.encode(), data])).hex()


def ilk32(name: str) -> bytes:
    """An ilk name as bytes32."""
    return name.encode().ljust(32, b"\0")


@dataclass(frozen=True, slots=True)
class StandInIlk:
    """One collateral type of the stand-in system: name, OSM price (WAD USD), liquidation ratio, dust, fee."""

    name: str
    price: int  #: WAD
    mat: int  #: RAY
    dust: int  #: RAD
    duty: int = RAY  #: per-second fee, RAY
    dec: int = 18  #: the gem's decimals (its GemJoin converts amt * 10**(18 - dec))


ILKS = (
    StandInIlk("ETH-A", 2000 * WAD, 3 * RAY // 2, 100 * RAD, 1_000_000_001_243_680_656_318_820_312),  # ~4%/yr
    StandInIlk(
        "WBTC-A", 60_000 * WAD, 17 * RAY // 10, 5_000 * RAD, 1_000_000_000_627_937_192_491_029_810, dec=8
    ),  # ~2%/yr
)
#: the Dog's limits in the stand-in: Hole 100M DAI, each ilk's hole 50M DAI, chop 1.13
HOLE, ILK_HOLE, CHOP = 100_000_000 * RAD, 50_000_000 * RAD, 113 * WAD // 100


@functools.cache
def maker_stand_in_artifacts() -> dict[str, tuple[list[dict[str, Any]], str]]:
    """Compile the Maker stand-in sources with solc-js: {contract: (abi, creation bytecode hex)}."""
    input_json = {
        "language": "Solidity",
        "sources": {src: {"content": (_SOL / src).read_text()} for src in _SOURCES},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": "shanghai",
            "outputSelection": {
                src: {n: ["abi", "evm.bytecode.object"] for n in names} for src, names in _SOURCES.items()
            },
        },
    }
    out = compile_standard_json(input_json)
    arts = {}
    for src, names in _SOURCES.items():
        for n in names:
            entry = contract_output(out, src, n)
            arts[n] = (entry["abi"], "0x" + entry["evm"]["bytecode"]["object"])
    return arts


def new_owners(count: int, salt: str = "owner") -> list[str]:
    """Placeholder vault owners: the manager keys vaults by address; owners never send transactions."""
    return [
        to_checksum_address(keccak(f"margin-watcher:maker-stand-in:{salt}:{i}".encode())[12:]) for i in range(count)
    ]


@dataclass
class MakerStandInSystem:
    """A deployed stand-in dss with ETH-A and WBTC-A, each with its own OSM, and helpers to drive it."""

    w3: Web3
    admin: str
    vat: Contract
    spotter: Contract
    jug: Contract
    manager: Contract
    osms: dict[str, Contract]
    ilks: dict[str, StandInIlk]
    dog: Contract
    clips: dict[str, Contract]
    get_cdps: Contract
    joins: dict[str, Contract]
    ilk_registry: Contract
    abis: dict[str, list[dict[str, Any]]] = field(repr=False)

    def contracts(self) -> dict[str, str]:
        """The deployment's other contracts by the keys protocols/maker.toml uses (vat, spot, jug, dog, ...)."""
        return {
            "vat": self.vat.address,
            "spot": self.spotter.address,
            "jug": self.jug.address,
            "dog": self.dog.address,
            "get_cdps": self.get_cdps.address,
            "ilk_registry": self.ilk_registry.address,
        }

    def _send(self, contract: Contract, abi_name: str, fn: str, *args: Any) -> int:
        data = Calldata(self.abis[abi_name]).encode(fn, *args)
        [r] = send_txs(self.w3, [Tx(self.admin, contract.address, data, GAS, fn)], errors_abi=self.abis[abi_name])
        return int(r["blockNumber"])

    def open(self, ilk: str, owner: str) -> int:
        """Open a vault for `owner` through the manager; returns its cdp id."""
        self._send(self.manager, "DssCdpManagerStandIn", "open", ilk32(ilk), owner)
        return int(self.manager.functions.cdpi().call())

    def give(self, cdp: int, dst: str) -> int:
        """Move a vault to another owner (the manager's give)."""
        return self._send(self.manager, "DssCdpManagerStandIn", "give", cdp, dst)

    def urn(self, cdp: int) -> str:
        """The vault's urn handler address."""
        return str(self.manager.functions.urns(cdp).call())

    def set_vault(self, cdp: int, ink: int, art: int) -> int:
        """Place ink and art (both WAD) in the vault's urn."""
        ilk = bytes(self.manager.functions.ilks(cdp).call())
        return self._send(self.vat, "VatStandIn", "setUrn", ilk, self.urn(cdp), ink, art)

    def set_rate(self, ilk: str, rate: int) -> int:
        """Overwrite the Vat's rate of an ilk (RAY)."""
        return self._send(self.vat, "VatStandIn", "setRate", ilk32(ilk), rate)

    def drip(self, ilk: str) -> int:
        """Jug.drip: fold the fee accrued since rho into the Vat's rate."""
        return self._send(self.jug, "JugStandIn", "drip", ilk32(ilk))

    def set_osm(self, ilk: str, cur: int | None, nxt: int | None, zzz: int | None = None) -> int:
        """Place the OSM's current and next values (WAD; None: has = 0), and optionally zzz; no Spotter poke."""
        osm = self.osms[ilk]
        block = self._send(osm, "OsmStandIn", "setCur", cur or 0, 0 if cur is None else 1)
        block = self._send(osm, "OsmStandIn", "setNxt", nxt or 0, 0 if nxt is None else 1)
        if zzz is not None:
            block = self._send(osm, "OsmStandIn", "setZzz", zzz)
        return block

    def poke(self, ilk: str) -> int:
        """Spotter.poke: file spot from the OSM's current value."""
        return self._send(self.spotter, "SpotterStandIn", "poke", ilk32(ilk))

    def set_price(self, ilk: str, price: int, nxt: int | None = None) -> int:
        """Set the OSM's current value (and next, the same unless given) and poke it into the Vat's spot."""
        self.set_osm(ilk, price, price if nxt is None else nxt)
        return self.poke(ilk)

    def set_par(self, par: int) -> int:
        """Spotter.file("par", par) (RAY); spot changes only on the next poke, as in dss."""
        return self._send(self.spotter, "SpotterStandIn", "file", b"par".ljust(32, b"\0"), par)

    def set_duty(self, ilk: str, duty: int) -> int:
        """Jug.file(ilk, "duty", duty) (RAY per second; the stand-in needs no drip first)."""
        return self._send(self.jug, "JugStandIn", "file", ilk32(ilk), b"duty".ljust(32, b"\0"), duty)

    def set_hole(self, hole_all: int | None = None, ilk: str | None = None, hole: int | None = None) -> int:
        """Dog.file("Hole", ...) and/or Dog.file(ilk, "hole", ...) (RAD)."""
        block = 0
        if hole_all is not None:
            block = self._send(self.dog, "DogStandIn", "file", b"Hole".ljust(32, b"\0"), hole_all)
        if ilk is not None and hole is not None:
            data = _spotter_file(ilk32(ilk), "hole", hole)
            [r] = send_txs(self.w3, [Tx(self.admin, self.dog.address, data, GAS, "dog.file hole")])
            block = int(r["blockNumber"])
        return block

    def set_dirt(self, ilk: str, dirt_all: int, dirt: int) -> int:
        """Place Dog.Dirt and the ilk's dirt (RAD), what running auctions would hold."""
        return self._send(self.dog, "DogStandIn", "setDirt", ilk32(ilk), dirt_all, dirt)

    def set_breaker(self, ilk: str, stopped: int) -> int:
        """Clipper.file("stopped", n): 1 and above refuse kick, so bark reverts."""
        return self._send(self.clips[ilk], "ClipperStandIn", "file", b"stopped".ljust(32, b"\0"), stopped)

    def osm_call(self, ilk: str, fn: str) -> int:
        """stop, start or void the ilk's OSM (auth)."""
        return self._send(self.osms[ilk], "OsmStandIn", fn)

    def bark_call(self, cdp: int, block: int | str = "latest", steps: tuple[str, ...] = ()) -> str | None:
        """Dog.bark(ilk, urn, keeper) as an eth_call at `block` after the given keeper steps in the same call
        context ("Spotter.poke", "Jug.drip" are sent first on a snapshot that is rolled back): the revert reason,
        or None when bark succeeds.
        """
        from watcher.devchain.deploy import revert_snapshot, take_snapshot

        ilk = bytes(self.manager.functions.ilks(cdp).call())
        data = Calldata(self.abis["DogStandIn"]).encode("bark", ilk, self.urn(cdp), self.admin)
        snap = take_snapshot(self.w3) if steps else None
        try:
            for step in steps:
                name = ilk.rstrip(b"\0").decode()
                if step == "Spotter.poke":
                    self.poke(name)
                elif step == "Jug.drip":
                    self.drip(name)
                else:
                    raise ValueError(f"unknown keeper step {step}")
            why = revert_reason(self.w3, Tx(self.admin, self.dog.address, data, 1_000_000, "bark"), block)
            return why or None
        finally:
            if snap is not None:
                revert_snapshot(self.w3, snap)

    def bark(self, cdp: int) -> dict[str, Any]:
        """Send Dog.bark as a keeper; the receipt (status 1: the vault went to auction)."""
        ilk = bytes(self.manager.functions.ilks(cdp).call())
        data = Calldata(self.abis["DogStandIn"]).encode("bark", ilk, self.urn(cdp), self.admin)
        [r] = send_txs(self.w3, [Tx(self.admin, self.dog.address, data, 1_000_000, "bark")], check=False)
        return dict(r)

    def join_and_lock(self, cdp: int, amt: int) -> int:
        """Send `amt` token base units to the ilk's GemJoin for the vault's urn and lock what it credits."""
        ilk = bytes(self.manager.functions.ilks(cdp).call())
        name = ilk.rstrip(b"\0").decode()
        urn = self.urn(cdp)
        self._send(self.joins[name], "GemJoinStandIn", "join", urn, amt)
        wad = amt * 10 ** (18 - self.ilks[name].dec)
        return self._send(self.vat, "VatStandIn", "lock", ilk, urn, wad)

    def vat_ilk(self, ilk: str, block: int | str = "latest") -> tuple[int, ...]:
        """Vat.ilks(ilk): (Art, rate, spot, line, dust)."""
        return tuple(self.vat.functions.ilks(ilk32(ilk)).call(block_identifier=block))

    def vat_urn(self, cdp: int, block: int | str = "latest") -> tuple[int, int]:
        """Vat.urns(ilk, urn) of a vault: (ink, art)."""
        ilk = bytes(self.manager.functions.ilks(cdp).call(block_identifier=block))
        ink, art = self.vat.functions.urns(ilk, self.urn(cdp)).call(block_identifier=block)
        return int(ink), int(art)

    def unsafe(self, cdp: int, block: int | str = "latest") -> bool:
        """The Dog's test on the stand-in Vat's state at `block`: spot > 0 and ink * spot < art * rate."""
        ilk = bytes(self.manager.functions.ilks(cdp).call(block_identifier=block)).rstrip(b"\0").decode()
        _, rate, spot, _, _ = self.vat_ilk(ilk, block)
        ink, art = self.vat_urn(cdp, block)
        return spot > 0 and ink * spot < art * rate


def deploy_maker_stand_in(w3: Web3) -> MakerStandInSystem:
    """Deploy the stand-in Vat, Spotter, Jug, manager, Dog, GetCdps and IlkRegistry, and per ilk an OSM, a
    Clipper and a GemJoin (ETH-A at 150%, 18 decimals; WBTC-A at 170%, 8 decimals).
    """
    arts = maker_stand_in_artifacts()
    abis = {n: a for n, (a, _) in arts.items()}
    admin = to_checksum_address(w3.eth.accounts[0])

    def deploy(name: str, *args: Any) -> Contract:
        abi, code = arts[name]
        return deploy_bytecode(w3, abi, code, list(args), admin, gas=4_000_000, label=f"deploy {name}")

    vat = deploy("VatStandIn")
    spotter = deploy("SpotterStandIn", vat.address)
    jug = deploy("JugStandIn", vat.address)
    manager = deploy("DssCdpManagerStandIn", vat.address)
    osms = {i.name: deploy("OsmStandIn", "0x" + "00" * 20) for i in ILKS}
    dog = deploy("DogStandIn", vat.address)
    clips = {i.name: deploy("ClipperStandIn", vat.address, spotter.address, dog.address, ilk32(i.name)) for i in ILKS}
    joins = {i.name: deploy("GemJoinStandIn", vat.address, ilk32(i.name), i.dec) for i in ILKS}
    get_cdps = deploy("GetCdpsStandIn")
    registry = deploy("IlkRegistryStandIn")
    vcd, scd, jcd, ocd = (Calldata(abis[n]) for n in ("VatStandIn", "SpotterStandIn", "JugStandIn", "OsmStandIn"))
    dcd, ccd, rcd = (Calldata(abis[n]) for n in ("DogStandIn", "ClipperStandIn", "IlkRegistryStandIn"))
    txs = [
        Tx(admin, vat.address, vcd.encode("rely", spotter.address), GAS, "vat.rely(spotter)"),
        Tx(admin, vat.address, vcd.encode("rely", jug.address), GAS, "vat.rely(jug)"),
        Tx(admin, vat.address, vcd.encode("rely", dog.address), GAS, "vat.rely(dog)"),
        Tx(admin, dog.address, dcd.encode("file", b"Hole".ljust(32, b"\0"), HOLE), GAS, "dog Hole"),
    ]
    for i in ILKS:
        name, osm, clip = ilk32(i.name), osms[i.name], clips[i.name]
        txs += [
            Tx(admin, vat.address, vcd.encode("rely", joins[i.name].address), GAS, "vat.rely(join)"),
            Tx(admin, registry.address, rcd.encode("put", name, joins[i.name].address), GAS, "registry.put"),
            Tx(admin, dog.address, _spotter_file(name, "clip", clip.address), GAS, "dog clip"),
            Tx(admin, dog.address, _spotter_file(name, "chop", CHOP), GAS, "dog chop"),
            Tx(admin, dog.address, _spotter_file(name, "hole", ILK_HOLE), GAS, "dog hole"),
            Tx(admin, clip.address, ccd.encode("rely", dog.address), GAS, "clip.rely(dog)"),
            Tx(admin, osm.address, ocd.encode("kiss", clip.address), GAS, "osm.kiss(clip)"),
            Tx(admin, vat.address, vcd.encode("init", name), GAS, "vat.init"),
            Tx(admin, vat.address, vcd.encode("file", name, b"dust".ljust(32, b"\0"), i.dust), GAS, "vat.file dust"),
            Tx(admin, vat.address, vcd.encode("file", name, b"line".ljust(32, b"\0"), 10**9 * RAD), GAS, "line"),
            Tx(admin, jug.address, jcd.encode("init", name), GAS, "jug.init"),
            Tx(admin, jug.address, jcd.encode("file", name, b"duty".ljust(32, b"\0"), i.duty), GAS, "jug duty"),
            Tx(admin, spotter.address, _spotter_file(name, "pip", osm.address), GAS, "spotter.file pip"),
            Tx(admin, spotter.address, _spotter_file(name, "mat", i.mat), GAS, "mat"),
            Tx(admin, osm.address, ocd.encode("kiss", spotter.address), GAS, "osm.kiss(spotter)"),
            Tx(admin, osm.address, ocd.encode("setCur", i.price, 1), GAS, "osm cur"),
            Tx(admin, osm.address, ocd.encode("setNxt", i.price, 1), GAS, "osm nxt"),
        ]
    send_txs(w3, txs, errors_abi=abis["VatStandIn"])
    # Poke after the OSMs hold their values (a separate burst: anvil may mine a burst in any order of blocks).
    send_txs(w3, [Tx(admin, spotter.address, scd.encode("poke", ilk32(i.name)), GAS, "poke") for i in ILKS])
    ilks = {i.name: i for i in ILKS}
    return MakerStandInSystem(
        w3, admin, vat, spotter, jug, manager, osms, ilks, dog, clips, get_cdps, joins, registry, abis
    )
