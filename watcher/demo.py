"""The embedded demo: a local chain, the real Aave v3 and Morpho Blue contracts, and a falling collateral price."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console
from rich.table import Table
from web3 import Web3

from watcher.adapters.aave_v3 import AaveV3Reader
from watcher.adapters.base import Account
from watcher.adapters.morpho_blue import MorphoBlueReader
from watcher.chain import ChainClient
from watcher.check import run_check
from watcher.model import WAD, Position
from watcher.render import health_text, make_console, perp_text, render_table, short
from watcher.risk import Thresholds, advise, level_of

DEMO_THRESHOLDS = Thresholds(warn=125 * WAD // 100, critical=110 * WAD // 100, target=150 * WAD // 100)

# label, supplies, borrows, eMode: a spread of positions that a falling WETH price treats differently.
DEMO_POSITIONS = (
    ("alice: WETH vs USDC", {"WETH": 10 * 10**18}, {"USDC": 12_000 * 10**6}, 0),
    ("bob: WBTC+WETH vs DAI", {"WBTC": 1 * 10**8, "WETH": 5 * 10**18}, {"DAI": 40_000 * 10**18}, 0),
    ("carol: eMode stables", {"USDC": 50_000 * 10**6}, {"DAI": 36_000 * 10**18}, 1),
    ("dave: short WETH", {"USDC": 60_000 * 10**6}, {"WETH": 16 * 10**18}, 0),
)
WETH_PRICES = (2_000, 1_900, 1_800, 1_700, 1_600, 1_500, 1_455, 1_400)


@contextlib.contextmanager
def _chain(kind: str) -> Iterator[Web3]:
    if kind == "anvil":
        from watcher.devchain.anvil import Anvil

        with Anvil() as node:
            yield node.w3
    else:
        from watcher.devchain.deploy import eth_tester_web3

        yield eth_tester_web3()


def _everything(w3: Web3, client: ChainClient, console: Console) -> None:
    """Every other protocol on the same chain (our stand-ins where no registry package ships the real one)."""
    from watcher.devchain.everything import deploy_everything

    t0 = time.perf_counter()
    with console.status("deploying every protocol (stand-in contracts compile on the first run only)..."):
        world = deploy_everything(w3, per_protocol=2)
    console.print(
        f"\n[bold]Every protocol on one chain[/]: {len(world.deployments)} deployments, 2 positions each, deployed in "
        f"{time.perf_counter() - t0:.1f} s. Real contracts: "
        + ", ".join(d.name for d in world.deployments if world.kind[d.name] == "real")
        + "; our stand-ins (the protocols' view ABI and integer math, written here): "
        + ", ".join(d.name for d in world.deployments if world.kind[d.name] == "stand-in")
        + "."
    )
    readers = world.readers()
    world.name_tokens(readers)  # the mocks and placeholders have no symbol() to read
    run_check({"local": client}, readers)  # the first check learns markets, vaults and feeds
    result = run_check({"local": client}, readers)
    stats = result.stats["local"]
    table = Table(title="one check of every protocol", title_justify="left")
    for col in ("protocol", "kind", "account", "health", "level", "liquidation price / what it watches"):
        table.add_column(col)
    for p in result.positions:
        lvl = level_of(p, DEMO_THRESHOLDS)
        if p.perps:
            what = "; ".join(perp_text(p, leg) for leg in p.perps)
        else:
            adv = advise(p, DEMO_THRESHOLDS.target) if p.has_debt else None
            lps = adv.liquidation_prices if adv else ()
            what = "; ".join(f"{lp.symbol} at {_price(p, lp.price)}" for lp in lps[:2]) or "-"
        table.add_row(p.protocol, world.kind[p.protocol], p.label, health_text(p.health), lvl.word, what)
    console.print(table)
    console.print(
        f"that check: {stats.eth_calls} eth_call ({stats.calls} reads, {stats.storage_reads} of them storage reads in "
        f"the same HTTP request) for {len(result.positions)} positions on {len(world.deployments)} deployments, "
        f"{result.seconds * 1000:.0f} ms"
    )
    for u in result.unreadable:
        console.print(f"[magenta]UNKNOWN[/] {u.protocol}: {u.reason}")


def _price(p: Position, price: int) -> str:
    decimals = len(str(p.base_unit)) - 1
    return ("$" if p.base_currency == "USD" else "") + short(price, decimals, 2)


def run_demo(chain: str = "anvil", version: str = "3.0", steps: int = len(WETH_PRICES), everything: bool = True) -> int:
    """Deploy Aave, open positions, lower the WETH price step by step and show the watcher's verdicts."""
    from watcher.devchain.aave import deploy_aave
    from watcher.devchain.deploy import deploy_batch_reader
    from watcher.devchain.morpho import deploy_morpho
    from watcher.devchain.node import node_modules

    console = make_console()
    t0 = time.perf_counter()
    console.print(
        f"[bold]Margin Watcher demo[/]: real Aave v{version} and Morpho Blue on a local {chain} chain "
        "(no network, no keys)"
    )
    with console.status("installing the local-chain tools from npm (first run only)..."):
        node_modules()
    with _chain(chain) as w3:
        with console.status(f"deploying Aave v{version} and Morpho Blue from their published sources..."):
            market = deploy_aave(w3, version)
            morpho = deploy_morpho(w3)
            reader_addr = deploy_batch_reader(w3)
        console.print(
            f"deployed Aave v{version}: Pool {market.pool_address} (POOL_REVISION {market.revision()}), "
            f"Morpho Blue {morpho.morpho.address}, BatchReader {reader_addr}, in {time.perf_counter() - t0:.1f} s"
        )
        accounts = []
        for label, supplies, borrows, emode in DEMO_POSITIONS:
            user = market.open_position(None, supplies, borrows, emode)
            accounts.append(Account(user, label.split(":")[0]))
            console.print(f"  opened {label} as {user}")
        [erin] = morpho.new_users(1)
        morpho.open_position(erin, 10**18, 1_200 * 10**6)  # 1 WETH against 1,200 USDC, LLTV 86%
        console.print(f"  opened erin: Morpho Blue WETH/USDC market as {erin}")
        erin_acct = Account(erin, "erin")
        liquidator = morpho.liquidator()
        client = ChainClient("local", w3.eth.chain_id, [(chain, w3)], reader_addr)
        reader = AaveV3Reader("aave_v3", "local", market.addresses_provider, accounts)
        morpho_reader = MorphoBlueReader("morpho_blue", "local", morpho.morpho.address, [morpho.market_id], [erin_acct])
        table = Table(title="WETH price falls; the watcher checks after every oracle update", title_justify="left")
        table.add_column("WETH price")
        for a in accounts:
            table.add_column(f"{a.label} health")
        table.add_column("erin (Morpho) health")
        table.add_column("watcher advice for the worst position")
        readings = agreed = 0
        result = None
        for price in WETH_PRICES[: max(1, steps)]:
            market.set_price("WETH", price * 10**8)
            morpho.set_price(price * 10**24)  # USDC (6 decimals) per WETH (18 decimals), scaled 1e36
            result = run_check({"local": client}, [reader, morpho_reader])
            by_account = {p.account: p for p in result.positions}
            cells, worst = [], None
            for a in accounts:
                p = by_account[a.address]
                lvl = level_of(p, DEMO_THRESHOLDS)
                cells.append(f"{health_text(p.health)} {lvl.word}")
                pool_hf = market.account_data(a.address, p.block.number)[5]
                readings += 1
                agreed += int(pool_hf == (p.health if p.health is not None else 2**256 - 1))
                if p.health is not None and (worst is None or p.health < worst.health):
                    worst = p
            m = by_account[erin]
            cells.append(f"{health_text(m.health)} {level_of(m, DEMO_THRESHOLDS).word}")
            readings += 1
            agreed += int(m.liquidatable == morpho.can_liquidate(liquidator, erin, m.block.number))
            advice = "-"
            if worst is not None and worst.health is not None and worst.health < DEMO_THRESHOLDS.warn:
                adv = advise(worst, DEMO_THRESHOLDS.target)
                acts = [*adv.top_ups, *adv.repayments]
                if acts:
                    a0 = acts[0]
                    verb = "add" if a0.kind == "supply" else "repay"
                    advice = f"{worst.label}: {verb} {short(a0.amount, a0.decimals)} {a0.symbol} -> 1.50"
            table.add_row(f"${price:,}", *cells, advice)
        console.print(table)
        console.print(
            "the protocols agreed with the watcher in "
            f"{agreed}/{readings} readings (Aave: getUserAccountData to the wei; Morpho: whether liquidate() succeeds)"
        )
        if result is not None:
            stats = result.stats["local"]
            console.print(
                f"last check: {stats.eth_calls} eth_call(s) for {len(accounts) + 1} accounts on 2 protocols, "
                f"{len(result.positions)} positions, {stats.seconds * 1000:.1f} ms"
            )
            console.print("\nThe last check in full:")
            # The Aave positions in full (Morpho's mock tokens carry no symbol or decimals to display).
            result.positions = [p for p in result.positions if p.protocol == "aave_v3"]
            advices = {p.key: advise(p, DEMO_THRESHOLDS.target) for p in result.positions if p.has_debt}
            render_table(result, advices, DEMO_THRESHOLDS, console, {"local": f"{chain} ({w3.eth.chain_id})"})
        if everything:
            _everything(w3, client, console)
    return 0
