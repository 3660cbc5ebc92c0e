"""Each protocol's own [[deployments]] keys, checked against the options model the protocol registers.

A protocol declares its keys as a pydantic model (a `ProtocolOptions`) in its ChainProtocol; the keys of a
deployment that are not the common ones (protocol, chains, name, adapter, address, contracts) are validated
against it, and the protocol's entry key (pool_addresses_provider, morpho, comet ...) may stand for `address`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from watcher.config.errors import ConfigError, format_validation_error
from watcher.config.models import DeploymentConfig
from watcher.config.values import Strict, evm_address


class ProtocolOptions(Strict):
    """A protocol's own [[deployments]] keys; this base has none, so any key beyond the common ones is a typo."""


def adapter_of(d: DeploymentConfig, files: dict[str, dict[str, Any]]) -> str | None:
    """The deployment's adapter: given, or its protocols/ file's."""
    return d.adapter or files.get(d.protocol, {}).get("adapter")


def deployment_options(
    d: DeploymentConfig, index: int, files: dict[str, dict[str, Any]]
) -> tuple[str | None, ProtocolOptions | None]:
    """The entry address the config gives (under `address` or the protocol's entry key) and the protocol's options.

    The options are None when the adapter is unknown or a venue's: resolution says so in its own words.
    """
    return own_keys(adapter_of(d, files), dict(d.model_extra or {}), d.address, index)


def own_keys(
    adapter: str | None, extras: dict[str, Any], address: str | None, index: int
) -> tuple[str | None, ProtocolOptions | None]:
    """`extras` (a deployment's keys beyond the common ones) validated against the adapter's options model."""
    from watcher.registry import chain_protocols

    where = f"deployments[{index}]"
    proto = chain_protocols().get(adapter or "")
    if proto is None:
        return address, None
    extras = dict(extras)
    given = address
    if proto.entry_key in extras:
        try:
            given = given or evm_address(extras.pop(proto.entry_key))
        except ValueError as exc:
            raise ConfigError(f"{where}.{proto.entry_key}: {exc}") from None
    model = proto.options or ProtocolOptions
    try:
        return given, model.model_validate(extras)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, ("deployments", index))) from None


def option_problems(data: dict[str, Any]) -> list[str]:
    """Every deployment's own keys (in the raw TOML document) against its protocol's model: one line per problem.

    Read from the raw document, so a typo in a protocol's key is reported beside the other keys' problems.
    """
    from watcher.resources import protocol_files

    deployments = data.get("deployments")
    if not isinstance(deployments, list) or not deployments:
        return []
    files = protocol_files()
    common = set(DeploymentConfig.model_fields)
    problems = []
    for i, raw in enumerate(deployments):
        if not isinstance(raw, dict):
            continue
        protocol = raw.get("protocol")
        adapter = raw.get("adapter") or (files.get(protocol, {}) if isinstance(protocol, str) else {}).get("adapter")
        if not isinstance(adapter, str):
            continue
        extras = {k: v for k, v in raw.items() if k not in common}
        try:
            own_keys(adapter, extras, None, i)
        except ConfigError as exc:
            problems.append(str(exc))
    return problems
