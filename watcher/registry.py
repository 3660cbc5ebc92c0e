"""The one registry of protocols: each adapter module registers what it reads, once; config and checks ask here.

A chain protocol names its adapter, the key of its entry contract in `protocols/*.toml` and `[[deployments]]`, and
the function that makes its reader; a venue protocol names its adapter and its reader's maker. Every module of
`watcher.adapters` is imported on first use, and so is every module named in MARGIN_WATCHER_PLUGINS (comma-separated),
so a protocol outside the package is one module with its own protocols file.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: modules to import after the built-in adapters, comma-separated: protocols kept outside the package
PLUGINS_ENV = "MARGIN_WATCHER_PLUGINS"


#: a protocols/ file's deployment entry: its name and its keys
Entry = tuple[str, dict[str, Any]]
#: what a settle hook returns: per entry kept, its name, its keys and the Deployment fields it settles
Settled = list[tuple[str, dict[str, Any], dict[str, Any]]]


@dataclass(frozen=True)
class ChainProtocol:
    """A protocol read on a chain."""

    adapter: str  #: the `adapter` value of its protocols file
    entry_key: str  #: the key naming its entry contract (pool_addresses_provider, comet, ...)
    make_reader: Callable[[Any, list[Any]], Any]  #: (resolved Deployment, accounts) -> Reader
    protocol_file: Path | None = None  #: a plugin's protocols file; the built-ins' are in protocols/
    #: its own [[deployments]] keys: a watcher.config.ProtocolOptions model (None: it takes none)
    options: type[Any] | None = None
    #: (options, protocols/ entries on the chain, watcher.config.Where) -> [(entry name, entry, Deployment fields)]:
    #: picks entries (Compound's markets by name) and settles the options per entry; None takes every entry as is
    settle: Callable[[Any, list[Entry], Any], Settled] | None = None


@dataclass(frozen=True)
class VenueProtocol:
    """An off-chain venue read over HTTP."""

    adapter: str
    make_reader: Callable[[Any, list[Any]], Any]  #: (resolved Venue, accounts) -> VenueReader
    #: an account's address as the venue spells it, checked (ValueError names the problem); None takes it as given
    address: Callable[[str], str] | None = None
    #: a venue of EVM addresses: with no accounts of its own it watches the [[accounts]] that list it (or all)
    evm_accounts: bool = False


_CHAIN: dict[str, ChainProtocol] = {}
_VENUE: dict[str, VenueProtocol] = {}
_loaded: list[str] = []


def register(protocol: ChainProtocol | VenueProtocol) -> ChainProtocol | VenueProtocol:
    """Add a protocol (an adapter module calls this once, at import); a second, different one of a name is refused."""
    table: dict[str, Any] = _CHAIN if isinstance(protocol, ChainProtocol) else _VENUE
    if protocol.adapter in _CHAIN or protocol.adapter in _VENUE:
        if table.get(protocol.adapter) == protocol:
            return protocol
        raise ValueError(f"protocol adapter {protocol.adapter!r} is registered twice")
    table[protocol.adapter] = protocol
    return protocol


def _load() -> None:
    plugins = tuple(n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip())
    key = ",".join(plugins)
    if _loaded and _loaded[-1] == key:
        return
    import watcher.adapters as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    for name in plugins:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a user's setting: one line naming it, not a traceback
            from watcher.config import ConfigError

            raise ConfigError(f"{PLUGINS_ENV}: cannot import {name!r}: {type(exc).__name__}: {exc}") from None
    _loaded.append(key)


def chain_protocols() -> dict[str, ChainProtocol]:
    """Every chain protocol, by adapter name."""
    _load()
    return dict(_CHAIN)


def venue_protocols() -> dict[str, VenueProtocol]:
    """Every venue protocol, by adapter name."""
    _load()
    return dict(_VENUE)


def plugin_files() -> list[Path]:
    """The protocols files plugins bring."""
    _load()
    return [p.protocol_file for p in _CHAIN.values() if p.protocol_file is not None]
