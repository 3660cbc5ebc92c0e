"""Which Chainlink-style feeds a position's own oracle reads, per protocol, and the eth_calls that name them.

Each protocol's knowledge is one small function from a position to its needs: for every asset (or perp driver) whose
history the probability wants, the path of view calls from a contract the position names to the feed's address, or
the fixed price the protocol values it at (Liquity's LUSD, at 1 USD); a Morpho oracle's price is the product and ratio
of up to four feeds, so its collateral has four needs, each with its power. `resolve` walks every path of a chain
at once: one eth_call per step, so two for Liquity v1 (TroveManager.priceFeed, then PriceFeed.priceAggregator) and
one for the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from watcher.abi import Contract, Fn, word_address
from watcher.adapters.base import Call
from watcher.adapters.gmx_v2.keys import token_key, word
from watcher.chain import ChainClient
from watcher.model import Position
from watcher.perp_probability import perp_driver

AAVE_ORACLE = Contract("IAaveOracle")
COMET = Contract("IComet")
LIQUITY_V1_TROVES = Contract("ILiquityV1TroveManager")
LIQUITY_V1_FEED = Contract("ILiquityV1PriceFeed")
LIQUITY_V2_FEED = Contract("ILiquityV2PriceFeed")
GMX_DATA_STORE = Contract("IGmxDataStore")
MORPHO_ORACLE = Contract("IMorphoChainlinkOracleV2")
ZERO = "0x" + "00" * 20


@dataclass(frozen=True, slots=True)
class Step:
    """One view call on the address the previous step gave: `word` of its answer is the next address."""

    fn: Fn
    args: tuple[Any, ...] = ()
    word: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class Lookup:
    """From a contract the position names, the calls that end at a feed's address."""

    start: str
    steps: tuple[Step, ...]
    #: the path as one string: lookups are made afresh for every position on every call and looked up in caches,
    #: where hashing the nested dataclasses each time cost more than the probability itself
    ident: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        calls = ";".join(f"{s.fn.selector.hex()}{s.args}{s.word}" for s in self.steps)
        object.__setattr__(self, "ident", f"{self.start.lower()}:{calls}")

    def __hash__(self) -> int:
        return hash(self.ident)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lookup) and other.ident == self.ident

    def describe(self) -> str:
        """The path as a user can retrace it, e.g. `0xComet.getAssetInfoByAddress(0xWETH)`."""
        calls = ".".join(f"{s.fn.name}({', '.join(_arg(a) for a in s.args)})" for s in self.steps)
        return f"{self.start}.{calls}"


@dataclass(frozen=True, slots=True)
class Need:
    """One asset whose price history the probability needs, and where the protocol's oracle gets that price."""

    key: str  #: the histories key: the token address, or a perp leg's driver
    label: str  #: symbol or market, for notes
    lookup: Lookup | None  #: None: the protocol does not read a feed for it
    fixed: str = ""  #: with no lookup: how the protocol prices it instead (e.g. "fixed at 1 USD by Liquity")
    #: the price is the product of its needs' feeds, each to this power (Morpho's base feeds 1, quote feeds -1)
    exponent: int = 1
    optional: bool = False  #: a path that ends at no feed means 1 (an unset Morpho feed), not a missing history
    #: the feed's latest round must be the price the protocol answered for this asset at the check (within
    #: `MATCH_WITHIN`) to be its history: a feed the config names wrongly is refused, not walked
    matches_price: bool = False
    feed_decimals: int = 8  #: the decimals of that feed's answers, for the comparison


#: how far a feed's latest round may be from the price the protocol answered (a round between the check's block and
#: the history's read moves it by ~0.5 %; a liquid staking token's composite price is 10 % or more from ETH's)
MATCH_WITHIN = 0.05


def _arg(a: Any) -> str:
    return f"0x{a:064x}" if isinstance(a, int) else str(a)


def _aave(p: Position) -> list[Need]:
    oracle = str(p.details["oracle"])
    return [
        Need(leg.asset, leg.symbol, Lookup(oracle, (Step(AAVE_ORACLE.getSourceOfAsset, (leg.asset,)),)))
        for leg in (*p.collateral, *p.debt)
    ]


def _compound_v3(p: Position) -> list[Need]:
    # Comet prices the base with baseTokenPriceFeed and each collateral with its AssetInfo.priceFeed (word 2)
    comet = str(p.details["comet"])
    out = [
        Need(leg.asset, leg.symbol, Lookup(comet, (Step(COMET.getAssetInfoByAddress, (leg.asset,), 2),)))
        for leg in p.collateral
    ]
    out += [Need(leg.asset, leg.symbol, Lookup(comet, (Step(COMET.baseTokenPriceFeed),))) for leg in p.debt]
    return out


def _liquity_v2(p: Position) -> list[Need] | str:
    # a WETH branch's PriceFeed answers its ethUsdOracle's round (word 0 of the struct is the aggregator); the LST
    # branches' composites (an exchange rate times other feeds, the lower of two) are not replayed
    feed = p.details.get("eth_usd_price_feed")
    branch = p.details.get("branch")
    if not feed:
        return (
            f"price history is not read for this {p.protocol} branch: no view leads from the CollateralRegistry to a "
            f"branch's PriceFeed (a WETH branch's can be named as contracts.eth_usd_price_feed_{branch}; an LST "
            "branch's composite price is not replayed)"
        )
    if p.details.get("shut_down"):
        return f"price history is not read: branch {branch} is shut down, and its price no longer follows a feed"
    path = (Step(LIQUITY_V2_FEED.ethUsdOracle),)
    # WETHPriceFeed's fetchPrice is its ethUsdOracle's answer: a feed named for an LST branch answers ETH's instead
    out = [Need(leg.asset, leg.symbol, Lookup(str(feed), path), matches_price=True) for leg in p.collateral]
    return out + [Need(leg.asset, leg.symbol, None, "fixed at 1 USD by Liquity") for leg in p.debt]


def _liquity_v1(p: Position) -> list[Need]:
    # v1's PriceFeed reads Chainlink ETH/USD (priceAggregator), Tellor only while Chainlink is broken or frozen
    path = (Step(LIQUITY_V1_TROVES.priceFeed), Step(LIQUITY_V1_FEED.priceAggregator))
    out = [Need(leg.asset, leg.symbol, Lookup(str(p.details["trove_manager"]), path)) for leg in p.collateral]
    return out + [Need(leg.asset, leg.symbol, None, "fixed at 1 USD by Liquity") for leg in p.debt]


def _gmx_v2(p: Position) -> list[Need]:
    # GMX's Oracle reads the Chainlink feed the DataStore keeps under PRICE_FEED for the market's index token
    store = str(p.details["data_store"])
    out: dict[str, Need] = {}
    for leg in p.perps:
        index = leg.details.get("index_token")
        if isinstance(index, str):
            step = Step(GMX_DATA_STORE.getAddress, (word(token_key("PRICE_FEED", index)),))
            out.setdefault(perp_driver(leg), Need(perp_driver(leg), leg.market, Lookup(store, (step,))))
    return list(out.values())


def _morpho_blue(p: Position) -> list[Need]:
    # MorphoChainlinkOracleV2: price = SCALE_FACTOR * base1 * base2 / (quote1 * quote2) of the loan per collateral,
    # an unset feed counting as 1; the loan token is the unit the price is in
    oracle = str(p.details["morpho_oracle"])
    out = [
        Need(leg.asset, f"{leg.symbol} {name}", Lookup(oracle, (Step(getattr(MORPHO_ORACLE, name)),)), "", exp, True)
        for leg in p.collateral
        for name, exp in (("BASE_FEED_1", 1), ("BASE_FEED_2", 1), ("QUOTE_FEED_1", -1), ("QUOTE_FEED_2", -1))
    ]
    return out + [Need(leg.asset, leg.symbol, None, "the unit of the Morpho oracle's price") for leg in p.debt]


def product_history(parts: Sequence[tuple[Sequence[tuple[int, int]], int]]) -> list[tuple[int, float]]:
    """The product of each series to its power at every time one moved, each held at its last value (once all
    exist): the price a Morpho oracle computes from its feeds."""
    events = sorted({t for h, _ in parts for t, _ in h})
    idx = [0] * len(parts)
    last: list[float | None] = [None] * len(parts)
    out: list[tuple[int, float]] = []
    for t in events:
        for i, (h, _) in enumerate(parts):
            while idx[i] < len(h) and h[idx[i]][0] <= t:
                last[i] = float(h[idx[i]][1])
                idx[i] += 1
        if all(v for v in last):
            value = 1.0
            for v, (_, e) in zip(last, parts, strict=True):
                value *= v**e  # type: ignore[operator]
            out.append((t, value))
    return out


def _which(p: Position) -> str:
    """The protocol a position comes from, by what its details name (its `protocol` is the deployment's name)."""
    d = p.details
    if "comet" in d:
        return "compound_v3"
    if "trove_manager" in d:
        return "liquity_v2" if "branch" in d else "liquity_v1"
    if "data_store" in d and p.perps:
        return "gmx_v2"
    if "account_id" in d and p.perps:
        return "synthetix_perps_v3"
    if "morpho_oracle" in d:
        return "morpho_blue"
    return p.protocol


#: protocol -> its needs; Aave and its forks are found by the oracle their positions name
SOURCES: dict[str, Callable[[Position], list[Need] | str]] = {
    "compound_v3": _compound_v3,
    "liquity_v1": _liquity_v1,
    "liquity_v2": _liquity_v2,
    "gmx_v2": _gmx_v2,
    "morpho_blue": _morpho_blue,
}
#: protocols whose oracle we know but do not read, and why
WHY_NOT = {
    "synthetix_perps_v3": (
        "price history is not read for synthetix_perps_v3 positions: the market's price comes from an Oracle "
        "Manager node (getPriceData's feedId), and the deployed markets' nodes read Pyth, which keeps no rounds on "
        "chain"
    ),
}


#: the details a position's needs are made from (with its legs): a position whose are unchanged has the same needs
_NAMED = (
    "oracle",
    "comet",
    "trove_manager",
    "branch",
    "eth_usd_price_feed",
    "data_store",
    "account_id",
    "morpho_oracle",
)
_KNOWN: dict[tuple[Any, ...], list[Need] | str] = {}


def feed_needs(p: Position) -> list[Need] | str:
    """The feeds the position's oracle reads, or why they are not read (kept: a check's positions repeat)."""
    key = (
        p.protocol,
        tuple((leg.asset, leg.symbol) for leg in (*p.collateral, *p.debt)),
        tuple((leg.market, str(leg.details.get("index_token"))) for leg in p.perps),
        tuple(str(p.details.get(k)) for k in _NAMED),
    )
    got = _KNOWN.get(key)
    if got is None:
        if len(_KNOWN) > 100_000:  # bounded: accounts come and go in a long-running daemon
            _KNOWN.clear()
        got = _KNOWN[key] = _needs(p)
    return got


def _needs(p: Position) -> list[Need] | str:
    if isinstance(p.details.get("oracle"), str):
        return _aave(p)
    kind = _which(p)
    fn = SOURCES.get(kind)
    if fn is None:
        return WHY_NOT.get(kind, f"price history is not read for {p.protocol} positions yet")
    try:
        return fn(p)
    except (KeyError, TypeError, ValueError) as exc:  # a position without what its oracle's path starts from
        return f"price history is not read: the {p.protocol} position names no {exc}"


async def resolve(
    client: ChainClient, lookups: Iterable[Lookup], block: int, known: MutableMapping[tuple[str, Lookup], str]
) -> None:
    """Learn the feed of each lookup not yet in `known` (keyed by chain and lookup): one eth_call per path step.

    A path that ends at no address (a revert, an empty answer, the zero address) stays unknown, and is asked again
    next time: an oracle may be given a feed later.
    """
    unknown = {lk for lk in lookups if (client.name, lk) not in known}
    todo = {lk: lk.start for lk in sorted(unknown, key=lambda lk: lk.ident)}
    depth = 0
    while todo:
        items = list(todo.items())
        calls = [Call(at, lk.steps[depth].fn.encode(*lk.steps[depth].args)) for lk, at in items]
        _, answers = await client.read(calls, block)
        todo = {}
        for (lk, _), (ok, data) in zip(items, answers, strict=True):
            try:
                found = word_address(data, lk.steps[depth].word) if ok else ZERO
            except ValueError:
                found = ZERO
            if found == ZERO:
                continue
            if depth + 1 == len(lk.steps):
                known[(client.name, lk)] = found
            else:
                todo[lk] = found
        depth += 1


__all__ = ["Lookup", "Need", "Step", "feed_needs", "product_history", "resolve"]
