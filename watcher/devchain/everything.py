"""Every on-chain protocol on one local chain: the real Aave v3 and Morpho Blue beside our stand-ins of the others.

Used by the benchmark and the test that prove one batched eth_call per chain per check across all protocols. The
stand-ins (Compound v3, Maker, Liquity v1/v2, GMX v2, Synthetix perps v3) are our own contracts, not the protocols'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from web3 import Web3

from watcher.adapters.base import Account, Reader
from watcher.check import make_reader
from watcher.config import Deployment

WAD = 10**18
USDC = 10**6


@dataclass
class World:
    """The deployments on the chain, the accounts with a position in each, and what each is (real or stand-in)."""

    w3: Web3
    deployments: list[Deployment] = field(default_factory=list)
    accounts: dict[str, list[Account]] = field(default_factory=dict)  #: by deployment name
    kind: dict[str, str] = field(default_factory=dict)  #: deployment name -> "real" or "stand-in"
    #: address -> (symbol, decimals) of the tokens deployed here whose contracts carry neither (Morpho's mocks, the
    #: stand-ins' placeholder addresses): named where they are made, so the demo shows WETH rather than 0x32EEce
    tokens: dict[str, tuple[str, int]] = field(default_factory=dict)

    def readers(self) -> list[Reader]:
        """One reader per deployment, built as `watcher check` builds them from a config."""
        return [make_reader(dep, self.accounts[dep.name]) for dep in self.deployments]

    def name_tokens(self, readers: list[Reader]) -> None:
        """Give readers the names of this chain's unnamed tokens (a reader asks symbol() only of those it lacks)."""
        from watcher.adapters.gmx_v2.reader import GmxV2Reader
        from watcher.adapters.liquity.v2 import LiquityV2Reader
        from watcher.adapters.morpho_blue import MorphoBlueReader

        for r in readers:
            if isinstance(r, GmxV2Reader | LiquityV2Reader):
                r.symbols.update({a.lower(): sym for a, (sym, _) in self.tokens.items()})
            elif isinstance(r, MorphoBlueReader):
                r.tokens.update({a: (dec, sym) for a, (sym, dec) in self.tokens.items()})

    def _add(self, name: str, adapter: str, address: str, accounts: list[str], kind: str, **extra: object) -> None:
        dep = Deployment(
            name=name, adapter=adapter, chain="local", chain_id=self.w3.eth.chain_id, address=address, **extra
        )
        self.deployments.append(dep)
        self.accounts[name] = [Account(a, f"{name}-{i}") for i, a in enumerate(accounts)]
        self.kind[name] = kind


def _aave(world: World, n: int) -> None:
    from watcher.devchain.aave import PositionSpec, deploy_aave

    market = deploy_aave(world.w3, "3.0")
    users = market.new_users(n)
    specs = [
        PositionSpec(u, {"WETH": (1 + i % 5) * WAD}, {"USDC": (800 + 50 * (i % 7)) * USDC}) for i, u in enumerate(users)
    ]
    market.open_positions_bulk(specs)
    world._add("aave_v3", "aave_v3", market.addresses_provider, users, "real")


def _morpho(world: World, n: int) -> None:
    from watcher.devchain.morpho import deploy_morpho

    market = deploy_morpho(world.w3, liquidity=10_000_000 * USDC)
    users = market.new_users(n)
    for i, u in enumerate(users):
        market.open_position(u, WAD, (500 + 100 * (i % 10)) * USDC)
    # the mocks are USDC-like and WETH-like (devchain/morpho); 18 decimals, as the reader takes for a token without
    # decimals(), so the amounts and prices it shows are the ones it showed before it had names
    world.tokens[market.loan_token.address] = ("USDC", 18)
    world.tokens[market.collateral_token.address] = ("WETH", 18)
    world._add("morpho_blue", "morpho_blue", market.morpho.address, users, "real", markets=[market.market_id])


def _compound(world: World, n: int) -> None:
    from watcher.devchain.comet import deploy_comet_stand_in, new_addresses

    market = deploy_comet_stand_in(world.w3)
    users = new_addresses(n, "everything")
    for i, u in enumerate(users):
        market.set_position(u, (900 + 20 * (i % 9)) * USDC, {"WETH": WAD})
    world._add("compound_v3", "compound_v3", market.comet.address, users, "stand-in")


def _maker(world: World, n: int) -> None:
    from watcher.devchain.maker import deploy_maker_stand_in, new_owners

    system = deploy_maker_stand_in(world.w3)
    owners = new_owners(n, "everything")
    for i, owner in enumerate(owners):
        cdp = system.open("ETH-A", owner)
        system.set_vault(cdp, 10 * WAD, (5_000 + 250 * (i % 8)) * WAD)
    extra = system.contracts()
    world._add("maker", "maker", system.manager.address, owners, "stand-in", extra=extra)


def _liquity(world: World, n: int) -> None:
    from watcher.devchain.liquity import deploy_liquity_v1_stand_in, deploy_liquity_v2_stand_in, placeholder

    v1 = deploy_liquity_v1_stand_in(world.w3)
    v1.set_trove(placeholder("everything:whale"), 880_000 * WAD, 900 * WAD)
    owners = [placeholder(f"everything:v1:{i}") for i in range(n)]
    for i, owner in enumerate(owners):
        v1.set_trove(owner, (10_000 + 500 * (i % 6)) * WAD, 10 * WAD)
    world._add("liquity_v1", "liquity_v1", v1.trove_manager.address, owners, "stand-in")
    v2 = deploy_liquity_v2_stand_in(world.w3)
    owners2 = [placeholder(f"everything:v2:{i}") for i in range(n)]
    world.tokens.update({b.token: (b.symbol, 18) for b in v2.branches})
    troves = []
    for i, owner in enumerate(owners2):
        trove = 10**30 + i
        v2.set_trove(i % 2, trove, owner, (12_000 + 300 * (i % 5)) * WAD, 10 * WAD)
        troves.append(trove)
    world._add("liquity_v2", "liquity_v2", v2.collateral_registry.address, owners2, "stand-in", troves=troves)


def _gmx(world: World, n: int) -> None:
    from watcher.devchain.gmx import TOKENS, deploy_gmx_stand_in

    gmx = deploy_gmx_stand_in(world.w3)
    world.tokens.update({t.address: (t.symbol, t.decimals) for t in TOKENS})
    users = [Web3.to_checksum_address(Web3.keccak(text=f"everything:gmx:{i}")[12:]) for i in range(n)]
    usd = 10**30
    for i, u in enumerate(users):
        gmx.set_position(u, "ETH/USD", "USDC", i % 2 == 0, 30_000 * usd, 10 * WAD, (2_500 + 100 * (i % 5)) * USDC)
    world._add("gmx_v2", "gmx_v2", gmx.reader.address, users, "stand-in", extra={"data_store": gmx.data_store.address})


def _synthetix(world: World, n: int) -> None:
    from watcher.devchain.synthetix import ETH, deploy_synthetix_stand_in, owner_addresses

    market = deploy_synthetix_stand_in(world.w3)
    owners = owner_addresses(n, "everything")
    ids = []
    for i, owner in enumerate(owners):
        account_id = 1_000 + i
        market.open_account(account_id, owner, (2_000 + 100 * (i % 4)) * WAD)
        market.set_position(account_id, ETH.market_id, (5 + i % 5) * WAD, 1_950 * WAD)
        ids.append(account_id)
    world._add("synthetix_perps_v3", "synthetix_perps_v3", market.proxy.address, owners, "stand-in", account_ids=ids)


#: Deployers in the order the batch carries them.
DEPLOYERS: dict[str, Callable[[World, int], None]] = {
    "aave_v3": _aave,
    "morpho_blue": _morpho,
    "compound_v3": _compound,
    "maker": _maker,
    "liquity": _liquity,
    "gmx_v2": _gmx,
    "synthetix_perps_v3": _synthetix,
}


def deploy_everything(w3: Web3, per_protocol: int = 3) -> World:
    """Deploy every protocol with `per_protocol` positions in each."""
    world = World(w3)
    for deploy in DEPLOYERS.values():
        deploy(world, per_protocol)
    return world
