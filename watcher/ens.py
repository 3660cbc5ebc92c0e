"""ENS names as accounts: `name.eth` resolved through the ENS registry (resolver(node), then addr(node)).

Names are resolved at start (a name that does not resolve then stops the command with one line naming the key) and
again every `ens.refresh` seconds by `watcher run`. A name that stops resolving, or moves to another address, keeps
the address it was started with and is reported: a warning log line and an `ens` entry in /health that makes the
watcher degraded. It is never dropped silently. Only ASCII letters, digits and hyphens are accepted in labels
(full ENSIP-15 normalisation, emoji and other scripts, is not implemented), and only the ETH address record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak, to_checksum_address

log = logging.getLogger("watcher")

#: the ENS registry on Ethereum mainnet (the same address since the 2020 migration)
MAINNET_REGISTRY = "0x00000000000C2E074eC69A0dFb2997BA6C7d2e1e"
_RESOLVER = keccak(text="resolver(bytes32)")[:4]
_ADDR = keccak(text="addr(bytes32)")[:4]
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def is_name(value: str) -> bool:
    """Whether an account value is meant as an ENS name rather than a hex address."""
    # a URL (a secret, maybe) is left to the address check, which names it without echoing it
    return not value.lower().startswith("0x") and "." in value and not any(c in value for c in "/:@?")


def normalize(name: str) -> str:
    """The name lower-cased; a ValueError unless every label is letters, digits and inner hyphens."""
    out = name.strip().lower()
    labels = out.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{name!r} is neither an address (0x and 40 hex digits) nor an ENS name such as vitalik.eth")
    return out


def namehash(name: str) -> bytes:
    """EIP-137 namehash: node = keccak(node of the parent ++ keccak(label)), from the root (32 zero bytes)."""
    node = b"\0" * 32
    if name:
        for label in reversed(name.split(".")):
            node = keccak(node + keccak(text=label))
    return node


class Unresolved(Exception):
    """A name with no resolver or no address, said in a sentence."""


@dataclass
class NameState:
    """One name's resolution: the address in use, and whether the latest lookup agreed with it."""

    address: str
    ok: bool = True
    error: str = ""
    checked: float = 0.0

    def doc(self) -> dict[str, Any]:
        """What /health shows."""
        return {"address": self.address, "ok": self.ok, "error": self.error, "checked": self.checked}


async def resolve(client: Any, registry: str, name: str) -> str:
    """The checksummed address `name` resolves to at the chain's head; Unresolved says why it does not."""
    block = await client.latest_block()
    node = namehash(name)
    raw = await client.raw_call(registry, _RESOLVER + node, block)
    if len(raw) < 32:
        raise Unresolved(f"{name}: no ENS registry at {registry} (empty answer)")
    resolver = raw[12:32]
    if resolver == b"\0" * 20:
        raise Unresolved(f"{name}: no resolver set in the ENS registry")
    raw = await client.raw_call(to_checksum_address(resolver), _ADDR + node, block)
    if len(raw) < 32 or raw[12:32] == b"\0" * 20:
        raise Unresolved(f"{name}: its resolver has no ETH address for it")
    return to_checksum_address(raw[12:32])


async def refresh(states: Mapping[str, NameState], lookup: Any) -> None:
    """Resolve every name again; a failure or another address is kept as a warning, never applied."""
    for name, state in states.items():
        try:
            now = await lookup(name)
        except Unresolved as exc:
            state.ok, state.error = False, f"{exc}; still watching {state.address}"
        except Exception as exc:  # a node that cannot answer: the same warning, with the cause
            state.ok, state.error = (
                False,
                f"{name}: lookup failed ({type(exc).__name__}); still watching {state.address}",
            )
        else:
            if now == state.address:
                state.ok, state.error = True, ""
            else:
                state.ok = False
                state.error = f"{name} now resolves to {now}; still watching {state.address} until a restart"
        state.checked = time.time()
        if not state.ok:
            log.warning("ens name", extra={"ens": name, "error": state.error})


async def watch_names(states: Mapping[str, NameState], lookup: Any, every: float, stop: asyncio.Event) -> None:
    """Refresh every `every` seconds until `stop`."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
        if not stop.is_set():
            try:
                await refresh(states, lookup)
            except Exception:  # a bug here must not end the refreshes for the rest of the run
                log.exception("ens refresh failed")


def ens_chain(cfg: Any, where: str) -> str:
    """The chain names are resolved on: ens.chain, else the one chain with chain_id 1; a ConfigError names `where`."""
    from watcher.config import ConfigError

    if cfg.ens.chain is not None:
        if cfg.ens.chain not in cfg.chains:
            raise ConfigError(f"ens.chain: {cfg.ens.chain!r} is not a chain under [chains]")
        return str(cfg.ens.chain)
    mainnet = [n for n, c in cfg.chains.items() if c.chain_id == 1]
    if len(mainnet) != 1:
        raise ConfigError(f"{where}: an ENS name needs a chain with chain_id = 1 under [chains], or ens.chain")
    return mainnet[0]


def make_lookup(cfg: Any, chain: str) -> Any:
    """An async name -> address through a fresh client of `chain` (closed after each lookup)."""
    from watcher.chain import ChainClient

    async def lookup(name: str) -> str:
        client = ChainClient.from_config(chain, cfg.chains[chain])
        try:
            return await resolve(client, cfg.ens.registry, name)
        finally:
            await client.close()

    return lookup


def resolve_accounts(cfg: Any) -> tuple[Any, dict[str, NameState]]:
    """The config with every ENS name among [[accounts]] resolved (label: the name beside any label), and the names."""
    from watcher.config import ConfigError, require_secrets

    named = [(i, a) for i, a in enumerate(cfg.accounts) if is_name(a.address)]
    if not named:
        return cfg, {}
    chain = ens_chain(cfg, f"accounts[{named[0][0]}].address")
    require_secrets(cfg, {chain})
    lookup = make_lookup(cfg, chain)

    async def all_names() -> dict[str, str]:
        out = {}
        for i, a in named:
            try:
                out[a.address] = await lookup(a.address)
            except Unresolved as exc:
                raise ConfigError(
                    f"accounts[{i}].address: {exc} (ens.registry {cfg.ens.registry} on {chain})"
                ) from None
        return out

    resolved = asyncio.run(all_names())
    accounts, seen = [], {a.address for a in cfg.accounts if not is_name(a.address)}
    for i, a in enumerate(cfg.accounts):
        if not is_name(a.address):
            accounts.append(a)
            continue
        address = resolved[a.address]
        if address in seen:
            raise ConfigError(f"accounts[{i}].address: {a.address} resolves to {address}, which is listed already")
        seen.add(address)
        label = f"{a.label} ({a.address})" if a.label else a.address
        accounts.append(a.model_copy(update={"address": address, "label": label}))
    log.info("ens names resolved", extra={"names": resolved})
    now = time.time()
    states = {name: NameState(address, checked=now) for name, address in resolved.items()}
    return cfg.model_copy(update={"accounts": accounts}), states


def start_watching(cfg: Any, states: dict[str, NameState], stop: asyncio.Event) -> asyncio.Task[None] | None:
    """In `watcher run`: a task refreshing the names every ens.refresh seconds, or None without names."""
    if not states:
        return None
    lookup = make_lookup(cfg, ens_chain(cfg, "accounts"))
    return asyncio.create_task(watch_names(states, lookup, cfg.ens.refresh, stop), name="ens")


__all__ = [
    "MAINNET_REGISTRY",
    "NameState",
    "Unresolved",
    "ens_chain",
    "is_name",
    "make_lookup",
    "namehash",
    "normalize",
    "refresh",
    "resolve",
    "resolve_accounts",
    "start_watching",
    "watch_names",
]
