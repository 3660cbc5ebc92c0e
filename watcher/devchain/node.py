"""Installs the pinned npm packages (protocol artifacts, solc-js, anvil) into a cache outside the repo."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NODE_PACKAGES: tuple[str, ...] = (
    "@aave/core-v3@1.19.3",
    "@aave-dao/aave-v3-origin@3.6.0",
    "solc@0.8.27",
    "@openzeppelin/contracts@5.7.0",
    "@bgd-labs/solidity-utils@1.1.2",
    "@foundry-rs/anvil@1.7.1",
    "@morpho-org/morpho-blue@1.0.0",
)

# npm may install a package's optional dependency for the current platform only, and only when asked to
# resolve the parent; the anvil binary lives in that platform package, so it is pinned to the same version.
_ANVIL_VERSION = "1.7.1"
_NPM_TIMEOUT_S = 900


class DevchainError(RuntimeError):
    """A local-chain fixture could not be built: missing tools, a failed install, compile or deploy."""


def cache_dir() -> Path:
    """Return the cache root: $MARGIN_WATCHER_CACHE, else ~/.cache/margin-watcher."""
    env = os.environ.get("MARGIN_WATCHER_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "margin-watcher"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _split_spec(spec: str) -> tuple[str, str]:
    # Scoped names start with "@", so the version separator is the last "@".
    name, _, version = spec.rpartition("@")
    return name, version


def _installed_version(modules: Path, name: str) -> str | None:
    try:
        return json.loads((modules / name / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def _anvil_platform_package() -> str:
    os_name = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform)
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if os_name is None or arch is None:
        raise DevchainError(f"anvil has no npm binary package for {sys.platform}/{machine}")
    return f"@foundry-rs/anvil-{os_name}-{arch}"


def _missing(modules: Path, specs: tuple[str, ...]) -> list[str]:
    return [spec for spec in specs if _installed_version(modules, _split_spec(spec)[0]) != _split_spec(spec)[1]]


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on path for the duration of the with-block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _npm_install(prefix: Path, specs: list[str]) -> None:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise DevchainError(
            "node and npm are required to build the local chain fixtures (install Node.js >= 20); "
            f"they fetch {', '.join(NODE_PACKAGES)}"
        )
    prefix.mkdir(parents=True, exist_ok=True)
    cmd = [npm, "install", "--no-audit", "--no-fund", "--save-exact", "--prefix", str(prefix), *specs]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_NPM_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DevchainError(f"npm install timed out after {_NPM_TIMEOUT_S}s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-4000:]
        raise DevchainError(f"npm install failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


def node_modules() -> Path:
    """Return the node_modules directory holding NODE_PACKAGES, installing them once if any is missing."""
    prefix = cache_dir() / "node"
    modules = prefix / "node_modules"
    anvil_spec = f"{_anvil_platform_package()}@{_ANVIL_VERSION}"
    wanted = (*NODE_PACKAGES, anvil_spec)
    if not _missing(modules, wanted):
        return modules
    with file_lock(cache_dir() / "node.lock"):
        # Another process may have finished the install while this one waited for the lock.
        if _missing(modules, wanted):
            _npm_install(prefix, list(NODE_PACKAGES))
        if _missing(modules, (anvil_spec,)):
            # Optional dependencies are skipped by some npm configurations; ask for the binary package directly.
            _npm_install(prefix, [*NODE_PACKAGES, anvil_spec])
        still = _missing(modules, wanted)
        if still:
            raise DevchainError(f"npm install left packages missing under {modules}: {', '.join(still)}")
    return modules


def anvil_binary() -> Path:
    """Return the path of the anvil executable from the platform package of @foundry-rs/anvil."""
    modules = node_modules()
    name = "anvil.exe" if sys.platform == "win32" else "anvil"
    binary = modules / _anvil_platform_package() / "bin" / name
    if not binary.is_file():
        raise DevchainError(f"anvil binary not found at {binary}")
    if not os.access(binary, os.X_OK):
        # Some extractors drop the exec bit; the binary is ours to run from the cache.
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary
