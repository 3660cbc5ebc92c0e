"""Maker (dss) / Sky vaults adapter: vaults through the DssCdpManager, Dog.bark's own verdict replayed exactly.

Verdict (simulator.py, keeper.py): liquidatable when a keeper can make the vault unsafe now, i.e. spot > 0 and
ink * spot < art * rate as the Vat stands or after the permissionless steps a keeper runs in the same transaction
before Dog.bark (Spotter.poke with the OSM's current value, Jug.drip to the block's time, OSM.poke once its hop
has passed). The position says which steps it takes, and when bark would still revert for a system reason (Dog
Hole or ilk hole full, the Clipper's breaker, a voided OSM) it stays liquidatable with that reason in its note.

`Position.health` is the worst health a keeper reaches now, or the OSM's next price brings (it shows that price an
hour ahead, so the user is warned before the Vat sees it); `details` has each and names the one used.

Units: collateral is in the GemJoin's token units (its `dec`, read through the IlkRegistry: a top-up is what the
user sends to the join, which credits amt * 10**(18 - dec) to the Vat); without a registry, in the Vat's 18-decimal
gem units. It is priced at the OSM's value, USD per whole token in WAD, so the base unit is 1e18 = one USD. The
debt is DAI (or USDS: the same Vat debt) = ceil(art * rate / RAY) wei, what a full repayment costs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from watcher.adapters.maker.keeper import JUG_DRIP, OSM_POKE, SPOTTER_POKE, Bark, DogState, bark
from watcher.adapters.maker.math import RAY, ceil_div, drip, ilk_bytes, ilk_name, rpow, spot_of
from watcher.adapters.maker.position import build_position
from watcher.adapters.maker.reader import DAI, OSM_CUR_SLOT, OSM_NXT_SLOT, MakerReader, make_reader
from watcher.adapters.maker.simulator import KeeperView, MakerSimulator
from watcher.adapters.maker.vaults import Vault
from watcher.config.options import ProtocolOptions
from watcher.registry import ChainProtocol, register

_Vault = Vault  # the name tests and older callers use


class MakerOptions(ProtocolOptions):
    """Maker's own [[deployments]] keys."""

    #: vault (cdp) ids to watch besides those the accounts own
    vaults: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)


register(ChainProtocol("maker", "cdp_manager", make_reader, options=MakerOptions))

__all__ = [
    "DAI",
    "JUG_DRIP",
    "OSM_CUR_SLOT",
    "OSM_NXT_SLOT",
    "OSM_POKE",
    "RAY",
    "SPOTTER_POKE",
    "Bark",
    "DogState",
    "KeeperView",
    "MakerReader",
    "MakerSimulator",
    "Vault",
    "bark",
    "build_position",
    "ceil_div",
    "drip",
    "ilk_bytes",
    "ilk_name",
    "make_reader",
    "rpow",
    "spot_of",
]
