"""A Maker vault as a Position: legs in token units, the keeper's verdict and its note, and the details shown."""

from __future__ import annotations

from typing import Any

from watcher.adapters.maker.keeper import why
from watcher.adapters.maker.math import RAY, WAD, ceil_div, ilk_name
from watcher.adapters.maker.simulator import MakerSimulator
from watcher.adapters.maker.vaults import Vault
from watcher.model import BPS, BlockRef, Leg, Position


def keeper_note(sim: MakerSimulator, ilk: str) -> tuple[dict[str, Any], str | None]:
    """The keeper's path as details, and the sentence the user reads (None when no keeper can act)."""
    kv = sim.keeper()
    info: dict[str, Any] = {
        "unsafe_now": sim.unsafe(),
        "keeper_steps": None if kv.steps is None else list(kv.steps),
        "bark_reverts": None if kv.steps is None else kv.bark.revert,
        "bark_takes_art": kv.bark.dart if kv.steps is not None and kv.bark.revert is None else None,
    }
    note = None
    if kv.steps is not None:
        after = f" after {' and '.join(kv.steps)}" if kv.steps else ""
        if kv.bark.revert is None:
            note = f"a keeper can liquidate this now{after}"
            if kv.steps:
                note += " (permissionless: run with Dog.bark in one transaction)"
            if kv.bark.dart < sim.art:
                note += (
                    f"; partially: the room under Dog.Hole and the ilk hole lets bark take {kv.bark.dart} of "
                    f"{sim.art} art"
                )
        else:
            note = f"liquidatable{after}, but {why(kv.bark.revert, sim.dog, ilk)}"
        if sim.dog is None:
            note += "; the Dog is not configured, so its limits and the Clipper's breaker were not checked"
    if sim.osm_stopped:
        stop = "the OSM is stopped: its next price does not take effect until it is restarted"
        note = stop if note is None else f"{note}; {stop}"
    return info, note


def build_position(
    protocol: str,
    chain: str,
    cdp: int,
    vault: Vault,
    owner: str,
    label: str,
    sim: MakerSimulator,
    block: BlockRef,
    extra: dict[str, Any],
) -> Position:
    """The vault's Position: collateral in the GemJoin's token units (what a top-up sends), debt in DAI wei."""
    name = ilk_name(vault.ilk)
    # A price implied by the Vat's spot when the pip has no readable current value (display only).
    price = sim.val if sim.val is not None else sim.spot * sim.mat // RAY * sim.par // RAY // 10**9
    decimals = 18 - (len(str(sim.gem_conv)) - 1)
    collateral = Leg(
        sim.gem, name, decimals, sim.ink // sim.gem_conv, price, sim.ink * price // WAD, BPS * RAY // sim.mat
    )
    debt_value = ceil_div(sim.tab() * sim.par, RAY * RAY)
    debt = Leg(sim.dai, "DAI", 18, sim.debt(), sim.par // 10**9, debt_value)
    source, health = sim.worst()
    healths = sim.healths()
    min_art = sim.min_art()
    keeper, note = keeper_note(sim, name)
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
        "dripped_health": healths.get("dripped"),
        "poked_health": healths.get("poked"),
        "next_health": healths.get("next"),
        "next_price": None,
        "next_price_at": None,
        "health_source": source,
        **keeper,
        "dust": sim.dust,
        "dust_dai": ceil_div(sim.dust, RAY),
        "below_dust": 0 < sim.tab() < sim.dust,
        "full_repay": sim.debt(),
        # The most DAI that can be repaid while the vault keeps >= dust of debt; anything more must repay all.
        "max_partial_repay": (
            max(ceil_div((sim.art - min_art + 1) * sim.rate, RAY) - 1, 0) if 0 < min_art < sim.art else 0
        ),
        "liquidation": (
            "Dog.bark takes the vault when spot > 0 and ink*spot < art*rate, after any permissionless "
            "Spotter.poke, Jug.drip or OSM.poke a keeper runs first in the same transaction; Hole/hole room, "
            "the Clipper's breaker and the OSM's current value decide whether bark goes through now"
        ),
        **extra,
    }
    if note is not None:
        details["note"] = note
    return Position(
        protocol=protocol,
        chain=chain,
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
