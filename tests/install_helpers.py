"""Helpers of the install tests: the shipped config.toml made local, and `watcher api` as a process over it."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomlkit

from tests.loopback import free_port
from tests.processes import REPO_ROOT, child_env, wait_for


def shipped_config(tmp_path: Path, port: int) -> Path:
    """The repository's config.toml with its database in tmp_path and the API on `port`."""
    doc = tomlkit.parse((REPO_ROOT / "config.toml").read_text())
    doc["storage"]["path"] = str(tmp_path / "from-config.db")  # type: ignore[index]
    doc["api"]["port"] = port  # type: ignore[index]
    path = tmp_path / "config.toml"
    path.write_text(tomlkit.dumps(doc))
    return path


def api_process(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """`watcher api --config F` (no chain needed: it serves the stored state)."""
    return subprocess.Popen(
        [sys.executable, "-m", "watcher.cli", "api", "--config", str(config)],
        cwd=REPO_ROOT,
        env=child_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def answers(port: int) -> bool:
    """Whether GET /health on 127.0.0.1:port answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait_api(proc: subprocess.Popen[str], port: int) -> None:
    """Wait until the process's API answers; fail the test if it exits first."""
    wait_for(lambda: answers(port) or proc.poll() is not None, 30, what="watcher api")
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""


@pytest.fixture
def watcher_api(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """`watcher api` over the shipped config with MARGIN_WATCHER_DB=tmp_path/state/watcher.db: (port, that path)."""
    port = free_port()
    db = tmp_path / "state" / "watcher.db"
    proc = api_process(shipped_config(tmp_path, port), {"MARGIN_WATCHER_DB": str(db)})
    try:
        wait_api(proc, port)
        yield port, db
    finally:
        proc.terminate()
        proc.wait(15)


__all__ = ["answers", "api_process", "shipped_config", "wait_api", "watcher_api"]
