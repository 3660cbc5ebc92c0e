"""An installed wheel (not only this checkout) finds abis/ and protocols/."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_and_finds_its_data(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
    )
    [wheel] = dist.glob("margin_watcher-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "watcher/_data/abis/IPool.json" in names
    assert "watcher/_data/protocols/aave_v3.toml" in names and "watcher/_data/protocols/spark.toml" in names
    assert "watcher/devchain/sol/BatchReader.sol" in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True
    )
    probe = (
        "import watcher.resources as r, json; "
        "print(json.dumps([str(r.data_dir('abis')), sorted(r.protocol_files()), len(r.load_abi('IPool'))]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data_dir, protocols, n_functions = json.loads(out)
    assert data_dir.startswith(str(target)) and data_dir.endswith("watcher/_data/abis")
    # the installed wheel finds the same protocols/ files as this checkout
    shipped = sorted(path.stem for path in (ROOT / "protocols").glob("*.toml"))
    assert protocols == shipped and {"aave_v3", "morpho_blue", "spark"} <= set(protocols) and n_functions > 5


def test_dev_help_prints_the_commands_and_exits_0() -> None:
    """`./dev help`, `--help` and `-h` print the command list, nothing of the script; an unknown command is exit 2."""
    for arg in ("help", "--help", "-h"):
        run = subprocess.run([str(ROOT / "dev"), arg], capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, (arg, run.stderr)
        assert "./dev test" in run.stdout and "./dev demo" in run.stdout
        assert "set -" not in run.stdout and "#" not in run.stdout, run.stdout
    bad = subprocess.run([str(ROOT / "dev"), "tset"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unknown command 'tset'" in bad.stderr and bad.stdout == ""
