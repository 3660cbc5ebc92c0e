"""Locate the data shipped beside the code: ABI files and protocol deployment files."""

from __future__ import annotations

import json
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder `name` (abis or protocols) from the installed wheel or, in a checkout, the repo root."""
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"data folder {name!r} is missing from the installation")


@cache
def load_abi(name: str) -> list[dict[str, Any]]:
    """Load abis/<name>.json."""
    return json.loads((data_dir("abis") / f"{name}.json").read_text())


@cache
def _builtin_protocol_files() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(data_dir("protocols").glob("*.toml")):
        out[path.stem] = tomllib.loads(path.read_text())
    return out


def protocol_files() -> dict[str, dict[str, Any]]:
    """Every protocols/*.toml, and the files plugins bring, keyed by file stem (the protocol's name in configs)."""
    from watcher.registry import plugin_files

    out = dict(_builtin_protocol_files())
    for path in plugin_files():
        out[path.stem] = tomllib.loads(path.read_text())
    return out
