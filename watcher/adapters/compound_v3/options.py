"""Compound v3's [[deployments]] keys and how they pick the chain's Comets."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from watcher.config import ConfigError, ProtocolOptions, Where
from watcher.registry import Entry


class CometOptions(ProtocolOptions):
    """Compound v3's own [[deployments]] keys."""

    #: the markets (one Comet per base asset) to watch, by their protocols/ names (USDC, WETH ...); default all
    markets: list[str] = Field(default_factory=list)


def settle(
    options: CometOptions, entries: list[Entry], where: Where
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The Comets named in `markets` (all when none is named); a name the chain has no Comet for is an error."""
    picked = entries
    if options.markets:
        names = {str(v.get("market", "")).upper() for _, v in entries}
        for j, m in enumerate(options.markets):
            if m.upper() not in names:
                raise ConfigError(
                    f"{where.key}.markets[{j}]: no {where.protocol} market {m!r} on chains.{where.chain} "
                    f"(known: {', '.join(sorted(names))})"
                )
        wanted = {m.upper() for m in options.markets}
        picked = [(n, v) for n, v in entries if str(v.get("market", "")).upper() in wanted]
    return [(n, v, {}) for n, v in picked]
