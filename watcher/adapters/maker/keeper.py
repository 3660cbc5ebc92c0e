"""What a keeper can do to a Maker vault in one transaction: the permissionless pre-steps, then Dog.bark replayed.

Spotter.poke, Jug.drip and (once its hop has passed) OSM.poke are permissionless, so a keeper can run any of them
and then bark in the same transaction. `bark_revert` follows dss's dog.sol bark and clip.sol kick require by
require, in their order; the first failing one is the revert reason, None when bark succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from watcher.adapters.maker.math import MAX_UINT256, RAY, WAD

#: the pre-steps a keeper may run before Dog.bark, in the order they go in the transaction
OSM_POKE, SPOTTER_POKE, JUG_DRIP = "OSM.poke", "Spotter.poke", "Jug.drip"


@dataclass(frozen=True, slots=True)
class DogState:
    """What Dog.bark and the ilk's Clipper.kick read besides the vault: limits, penalty and breakers."""

    live: int  #: Dog.live (0 after End.cage)
    Hole: int  #: Dog.Hole, RAD
    Dirt: int  #: Dog.Dirt, RAD
    hole: int  #: Dog.ilks(ilk).hole, RAD
    dirt: int  #: Dog.ilks(ilk).dirt, RAD
    chop: int  #: Dog.ilks(ilk).chop, WAD
    clip: str  #: Dog.ilks(ilk).clip
    stopped: int  #: Clipper.stopped: kick needs stopped < 1
    buf: int  #: Clipper.buf, RAY: top = feed price * buf


@dataclass(frozen=True, slots=True)
class Bark:
    """The outcome of Dog.bark on one state: the revert reason or None, and the art it takes when it succeeds."""

    revert: str | None
    dart: int = 0
    dink: int = 0


def _mul(x: int, y: int) -> int | None:
    """dss's checked mul: None where the contract's require would revert on overflow."""
    z = x * y
    return None if z > MAX_UINT256 else z


def bark(
    ink: int, art: int, rate: int, spot: int, dust: int, dog: DogState | None, feed: tuple[bool, int] | None, par: int
) -> Bark:
    """Dog.bark (then Clipper.kick) on this vault state; `feed` is the pip's peek (has, val), None: not readable.

    Without a DogState only bark's first test (live is unknown, the vault must be unsafe) can be replayed.
    """
    if dog is not None and dog.live != 1:
        return Bark("Dog/not-live")
    a, b = _mul(ink, spot), _mul(art, rate)
    if a is None or b is None:
        return Bark("overflow")
    if not (spot > 0 and a < b):
        return Bark("Dog/not-unsafe")
    if dog is None:
        return Bark(None, art, ink)
    if not (dog.Hole > dog.Dirt and dog.hole > dog.dirt):
        return Bark("Dog/liquidation-limit-hit")
    room = min(dog.Hole - dog.Dirt, dog.hole - dog.dirt)
    if dog.chop == 0 or rate == 0:
        return Bark("division by zero (the ilk has no chop in the Dog)")
    scaled = _mul(room, WAD)
    if scaled is None:
        return Bark("overflow")
    dart = min(art, scaled // rate // dog.chop)
    if art > dart:
        if (art - dart) * rate < dust:
            dart = art  # a dusty remainder: bark takes the whole vault instead
        elif dart * rate < dust:
            return Bark("Dog/dusty-auction-from-partial-liquidation")
    dink = ink * dart // art
    if dink == 0:
        return Bark("Dog/null-auction")
    due = dart * rate
    tab = _mul(due, dog.chop)
    if tab is None:
        return Bark("overflow")
    tab //= WAD
    # Clipper.kick: auth (the Dog is relied), lock, then isStopped(1), the inputs and the feed price.
    if int(dog.clip, 16) == 0:
        return Bark("no Clipper for the ilk in the Dog (kick on address 0 reverts)")
    if dog.stopped >= 1:
        return Bark("Clipper/stopped-incorrect")
    if tab == 0:
        return Bark("Clipper/zero-tab")
    if feed is not None:
        has, val = feed
        if not has:  # a voided OSM: peek answers has = false
            return Bark("Clipper/invalid-price")
        if par == 0:
            return Bark("division by zero (Spotter.par is 0)")
        if val * 10**9 * RAY // par * dog.buf // RAY == 0:
            return Bark("Clipper/zero-top-price")
    return Bark(None, dart, dink)


def why(revert: str, dog: DogState | None, ilk: str) -> str:
    """A revert reason of bark as the user reads it: what blocks it and what it waits for."""
    if revert == "Dog/liquidation-limit-hit" and dog is not None:
        if dog.Hole <= dog.Dirt:
            return "Dog.Hole is full (Dirt >= Hole): bark waits for capacity"
        return f"the {ilk} hole is full (dirt >= hole): bark waits for capacity"
    texts = {
        "Dog/dusty-auction-from-partial-liquidation": (
            "the room left under Dog.Hole and the ilk hole buys an auction below dust: bark waits for capacity"
        ),
        "Clipper/stopped-incorrect": (
            f"the {ilk} Clipper's breaker is on (stopped = {dog.stopped if dog else '?'}): bark waits for it to be "
            "lifted"
        ),
        "Clipper/invalid-price": (
            "the OSM has no current price (voided): the Clipper cannot price an auction until the oracle is restored"
        ),
        "Clipper/zero-top-price": "the auction's starting price would be 0 (Clipper.buf or the feed): kick reverts",
        "Dog/not-live": "the Dog is caged (emergency shutdown): no vault is barked",
        "Dog/null-auction": "bark would take no collateral (null auction)",
    }
    return texts.get(revert, f"bark reverts ({revert})")
