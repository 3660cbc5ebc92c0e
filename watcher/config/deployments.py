"""Deployments and venues resolved: each [[deployments]] entry matched with protocols/ and its protocol's options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address
from pydantic import BaseModel, ConfigDict, model_validator

from watcher.config.errors import ConfigError
from watcher.config.models import Config, VenueAccount
from watcher.config.options import adapter_of, deployment_options
from watcher.config.values import evm_address
from watcher.resources import protocol_files


class Deployment(BaseModel):
    """A resolved deployment: which adapter reads it, on which chain, at which address.

    The protocol's own options (Maker's `vaults`, Morpho's `markets` ...) ride along as extra fields, as its
    registered options model and settle hook made them: `dep.vaults`.
    """

    model_config = ConfigDict(extra="allow")

    name: str
    adapter: str
    chain: str
    chain_id: int
    address: str  #: the entry contract: Aave's PoolAddressesProvider, the Morpho singleton, a Comet, ...
    market: str = ""  #: the market's name in protocols/ where a protocol has one contract per market (Compound)
    extra: dict[str, str] = {}  #: other addresses from the protocols/ entry (checksummed), by key

    @model_validator(mode="after")
    def _own_options(self) -> Deployment:
        """The protocol's own options checked, and those left out (a deployment built in code) at their defaults."""
        from watcher.registry import chain_protocols

        proto = chain_protocols().get(self.adapter)
        if proto is not None and proto.options is not None and self.__pydantic_extra__ is not None:
            self.__pydantic_extra__.update(proto.options.model_validate(self.__pydantic_extra__).model_dump())
        return self

    @property
    def pool_addresses_provider(self) -> str:
        """The Aave entry contract (the same as `address`)."""
        return self.address


_NOT_ADDRESSES = {"chain_id", "market", "title", "adapter", "note", "base_url", "deployed_at"}


def _extra(entry: dict[str, Any], key: str, where: str) -> dict[str, str]:
    """The entry's other addresses (a Maker Vat, a GMX DataStore ...), checksummed."""
    out = {}
    for k, v in entry.items():
        if k in _NOT_ADDRESSES or k == key or not isinstance(v, str):
            continue
        try:
            out[k] = evm_address(v)
        except ValueError as exc:
            raise ConfigError(f"{where}.{k}: {exc}") from None
    return out


def resolve_deployments(cfg: Config) -> list[Deployment]:
    """Match each [[deployments]] entry with protocols/, the configured chains and its protocol's options."""
    from watcher.registry import chain_protocols, venue_protocols

    files = protocol_files()
    chain_adapters, venue_adapters = chain_protocols(), venue_protocols()
    out: list[Deployment] = []
    for i, d in enumerate(cfg.deployments):
        where = f"deployments[{i}]"
        spec = files.get(d.protocol)
        adapter = adapter_of(d, files)
        given, options = deployment_options(d, i, files)
        if spec is None and given is None:
            known = ", ".join(sorted(k for k, v in files.items() if v.get("adapter") in chain_adapters))
            raise ConfigError(f"{where}.protocol: unknown protocol {d.protocol!r} (known: {known})")
        if adapter in venue_adapters:
            raise ConfigError(f"{where}.protocol: {d.protocol} is an off-chain venue: configure it under [venues]")
        if adapter not in chain_adapters or options is None:
            raise ConfigError(f"{where}.adapter: unknown adapter {adapter!r} (known: {', '.join(chain_adapters)})")
        proto = chain_adapters[adapter]
        key = proto.entry_key
        for chain in d.chains:
            if chain not in cfg.chains:
                raise ConfigError(f"{where}.chains: unknown chain {chain!r} (configured: {', '.join(cfg.chains)})")
            chain_id = cfg.chains[chain].chain_id
            entries: list[tuple[str, dict[str, Any]]]
            if given is not None:
                entries = [("custom", {key: given})]
            else:
                assert spec is not None
                entries = [
                    (n, v) for n, v in spec.get("deployments", {}).items() if v.get("chain_id") == chain_id and key in v
                ]
                if not entries:
                    raise ConfigError(
                        f"{where}: protocols/{d.protocol}.toml has no deployment on chain id {chain_id} "
                        f"(chains.{chain}); give {key} for a custom one"
                    )
            settled = (
                proto.settle(options, entries, Where(where, d.protocol, chain))
                if proto.settle is not None
                else [(n, e, options.model_dump()) for n, e in entries]
            )
            for entry_name, entry, own in settled:
                out.append(
                    Deployment(
                        name=d.name or d.protocol,
                        adapter=adapter,
                        chain=chain,
                        chain_id=chain_id,
                        address=to_checksum_address(entry[key]),
                        market=str(entry.get("market", "")),
                        extra=_extra(entry, key, f"protocols/{d.protocol}.toml deployments.{entry_name}")
                        | dict(d.contracts),
                        **own,
                    )
                )
    names = {dep.name for dep in out} | set(cfg.venues)
    for i, a in enumerate(cfg.accounts):
        for p in a.protocols or []:
            if p not in names:
                raise ConfigError(
                    f"accounts[{i}].protocols: unknown deployment {p!r} (configured: {', '.join(sorted(names))})"
                )
    return out


@dataclass(frozen=True)
class Where:
    """Where a deployment is in the config, for a protocol's settle hook to name in its errors."""

    key: str  #: "deployments[2]"
    protocol: str  #: the protocols/ file's name
    chain: str  #: the configured chain being resolved


class Venue(BaseModel):
    """A resolved off-chain venue: its adapter, base URL and accounts."""

    name: str
    adapter: str
    base_url: str
    interval: float
    timeout: float
    max_age: float
    max_response_bytes: int = 8_000_000
    accounts: list[VenueAccount]


def resolve_venues(cfg: Config) -> list[Venue]:
    """Each [venues.<name>] with its base URL (default from protocols/) and accounts, validated for its adapter."""
    from watcher.registry import venue_protocols

    files = protocol_files()
    venue_adapters = venue_protocols()
    out = []
    for name, v in cfg.venues.items():
        where = f"venues.{name}"
        spec = files.get(v.protocol, {})
        adapter = spec.get("adapter")
        if adapter not in venue_adapters:
            known = ", ".join(sorted(k for k, f in files.items() if f.get("adapter") in venue_adapters))
            raise ConfigError(f"{where}.protocol: {v.protocol!r} is not an off-chain venue (known: {known})")
        base_url = v.base_url or spec.get("base_url")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.base_url: give an http(s) URL")  # never echoed: it may carry a key
        proto = venue_adapters[adapter]
        accounts = list(v.accounts)
        if proto.evm_accounts and not accounts:
            accounts = [
                VenueAccount(address=a.address, label=a.label)
                for a in cfg.accounts
                if a.protocols is None or name in a.protocols
            ]
        check = proto.address
        if check is not None:
            for j, acct in enumerate(accounts):
                try:
                    accounts[j] = acct.model_copy(update={"address": check(acct.address)})
                except ValueError as exc:
                    raise ConfigError(f"{where}.accounts[{j}].address: {exc}") from None
        if not accounts:
            raise ConfigError(f"{where}.accounts: no account to watch on this venue")
        out.append(
            Venue(
                name=name,
                adapter=adapter,
                base_url=base_url,
                interval=v.interval,
                timeout=v.timeout,
                max_age=v.max_age,
                max_response_bytes=v.max_response_bytes,
                accounts=accounts,
            )
        )
    return out
