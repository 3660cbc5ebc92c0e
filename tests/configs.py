"""Config files for tests, built from the parts a test varies and written by one TOML writer."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tomlkit

#: a value for merge() that removes the key
DELETE = object()
THRESHOLDS = {"warn": 1.25, "critical": 1.1, "target": 1.5}


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `base` with `overrides` merged in: dicts merge key by key, DELETE removes, anything else wins."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    """Write `data` as a TOML file; returns the path."""
    path.write_text(tomlkit.dumps(data))
    return path


def local_chain(chain_id: int, url: str, multicall: str, **keys: Any) -> dict[str, Any]:
    """A [chains.<name>] table for a local node; `keys` add or override chain keys."""
    # anvil mines only on transactions: its head ages between tests and is not a stuck node
    return {"chain_id": chain_id, "rpc_urls": [url], "multicall": multicall, "max_block_age": 86_400.0} | keys


def accounts(addresses: Iterable[str], labels: Iterable[str] | None = None) -> list[dict[str, str]]:
    """[[accounts]] entries: each address with its label (user0, user1, ... unless given)."""
    addresses = list(addresses)
    names = list(labels) if labels is not None else [f"user{i}" for i in range(len(addresses))]
    return [{"address": a, "label": n} for a, n in zip(addresses, names, strict=True)]


def inline_env(var: str) -> Any:
    """`{ env = "VAR" }` written inline, as a user writes a secret (a test may append keys to the table around it)."""
    table = tomlkit.inline_table()
    table["env"] = var
    return table


def config_toml(
    chain: dict[str, Any], deployment: dict[str, Any], watched: list[dict[str, str]], **sections: Any
) -> str:
    """The TOML text of a config reading one deployment on chains.local for `watched`, with `sections` merged in."""
    parts = {
        "thresholds": dict(THRESHOLDS),
        "chains": {"local": chain},
        "deployments": [{"chains": ["local"], **deployment}],
        "accounts": watched,
    }
    return tomlkit.dumps(merge(parts, sections))


def check_config(
    path: Path,
    chain: dict[str, Any],
    deployment: dict[str, Any],
    watched: list[dict[str, str]],
    **sections: Any,
) -> Path:
    """Write a config reading one deployment on chains.local for `watched`; `sections` add or override tables."""
    path.write_text(config_toml(chain, deployment, watched, **sections))
    return path
