"""Compiles Solidity with solc-js (run by node from the npm cache) and caches the output by input hash."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from watcher.devchain.node import DevchainError, cache_dir, file_lock, node_modules

SOLC_SPEC = "solc@0.8.27"
_HERE = Path(__file__).resolve().parent
_SOLCJS = _HERE / "solcjs.cjs"
_BATCH_READER = _HERE / "sol" / "BatchReader.sol"
_COMPILE_TIMEOUT_S = 900


def _cache_key(input_json: dict[str, Any], base_dirs: Sequence[Path]) -> str:
    h = hashlib.sha256()
    # The compiler version and the driver script change the output as much as the input does.
    h.update(SOLC_SPEC.encode())
    h.update(_SOLCJS.read_bytes())
    h.update(json.dumps([str(p) for p in base_dirs]).encode())
    h.update(json.dumps(input_json, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def _raise_on_errors(output: dict[str, Any]) -> None:
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        text = "\n".join(e.get("formattedMessage") or e.get("message", "") for e in errors)
        raise DevchainError(f"solc failed:\n{text}")


def compile_standard_json(
    input_json: dict[str, Any],
    *,
    remappings: Sequence[str] = (),
    base_dirs: Sequence[Path] = (),
    compiler_dir: Path | None = None,
) -> dict[str, Any]:
    """Compile a solc standard-JSON input; imports resolve from node_modules then base_dirs.

    `compiler_dir` is another node_modules whose `solc` package compiles instead of the default one (for sources
    that pin an older compiler); it is part of the cache key.
    """
    request = json.loads(json.dumps(input_json))
    if remappings:
        settings = request.setdefault("settings", {})
        settings["remappings"] = [*settings.get("remappings", []), *remappings]
    modules = node_modules()
    bases = [modules, *(Path(p).resolve() for p in base_dirs)]
    if compiler_dir is not None:
        # solcjs.cjs loads `solc` from its first base dir.
        bases.insert(0, Path(compiler_dir).resolve())
    key = _cache_key(request, bases)
    out_dir = cache_dir() / "solc"
    out_path = out_dir / f"{key}.json"
    if out_path.is_file():
        return json.loads(out_path.read_text())
    node = shutil.which("node")
    if node is None:
        raise DevchainError("node is required to run solc-js (install Node.js >= 20)")
    with file_lock(out_dir / f"{key}.lock"):
        # A parallel process may have produced the same output while this one waited.
        if out_path.is_file():
            return json.loads(out_path.read_text())
        try:
            proc = subprocess.run(
                [node, str(_SOLCJS), *map(str, bases)],
                input=json.dumps(request),
                capture_output=True,
                text=True,
                timeout=_COMPILE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DevchainError(f"solc-js timed out after {_COMPILE_TIMEOUT_S}s") from exc
        if proc.returncode != 0:
            raise DevchainError(f"solc-js exited with {proc.returncode}:\n{proc.stderr.strip()[-4000:]}")
        try:
            output = json.loads(proc.stdout)
        except ValueError as exc:
            raise DevchainError(f"solc-js printed no JSON:\n{proc.stdout[:2000]}{proc.stderr[-2000:]}") from exc
        _raise_on_errors(output)
        tmp = out_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(output))
        os.replace(tmp, out_path)
    return output


def contract_output(output: dict[str, Any], source: str, name: str) -> dict[str, Any]:
    """Return one contract's entry (abi, evm...) from a standard-JSON output."""
    try:
        return output["contracts"][source][name]
    except KeyError as exc:
        raise DevchainError(f"{source}:{name} is not in the compiler output") from exc


def batch_reader_artifact() -> tuple[list[dict[str, Any]], str]:
    """Compile watcher/devchain/sol/BatchReader.sol and return (abi, creation bytecode hex)."""
    source = "BatchReader.sol"
    input_json = {
        "language": "Solidity",
        "sources": {source: {"content": _BATCH_READER.read_text()}},
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            # Shanghai is the newest fork every supported local chain and most L2s execute.
            "evmVersion": "shanghai",
            "outputSelection": {source: {"BatchReader": ["abi", "evm.bytecode.object"]}},
        },
    }
    entry = contract_output(compile_standard_json(input_json), source, "BatchReader")
    return entry["abi"], "0x" + entry["evm"]["bytecode"]["object"]
