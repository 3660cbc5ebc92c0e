"""`watcher init` as a process: a commented starter config that `watcher config check` passes, never over a file
without --force, and every bad chain, protocol or address named with exit 2."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.test_cli_options import watcher

A = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
B = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"


def test_init_writes_a_config_that_config_check_passes(tmp_path: Path) -> None:
    out = tmp_path / "my.toml"
    got = watcher(
        "init", "--chain", "ethereum", "--chain", "base", "--account", A, "--account", f"{B}=savings", "-o", str(out)
    )
    assert got.returncode == 0, got.stderr
    assert (
        f"wrote {out}" in got.stdout
        and "export ETHEREUM_RPC_URL=" in got.stdout
        and "export BASE_RPC_URL=" in got.stdout
    )
    text = out.read_text()
    assert text.startswith("# Margin Watcher configuration, written by `watcher init`")
    doc = tomllib.loads(text)
    assert doc["chains"] == {
        "ethereum": {"chain_id": 1, "rpc_urls": [{"env": "ETHEREUM_RPC_URL"}]},
        "base": {"chain_id": 8453, "rpc_urls": [{"env": "BASE_RPC_URL"}]},
    }
    assert [(a["address"], a.get("label")) for a in doc["accounts"]] == [(A, None), (B, "savings")]
    deps = {d["protocol"]: d["chains"] for d in doc["deployments"]}
    assert (
        deps["aave_v3"] == ["ethereum", "base"]
        and deps["spark"] == ["ethereum"]
        and deps["compound_v3"] == ["ethereum", "base"]
    )
    # those that need ids are there, commented out with the key to fill in
    assert "morpho_blue" not in deps and '# protocol = "morpho_blue"' in text and "# discover = true" in text
    assert "synthetix_perps_v3" not in deps and "# account_ids = []" in text
    check = watcher(
        "config", "check", "-c", str(out), ETHEREUM_RPC_URL="http://127.0.0.1:9", BASE_RPC_URL="http://127.0.0.1:9"
    )
    assert check.returncode == 0, check.stderr
    assert "aave_v3 on base" in check.stdout and "accounts:     2" in check.stdout
    unset = watcher("config", "check", "-c", str(out))
    assert (
        unset.returncode == 2
        and "BASE_RPC_URL (chains.base.rpc_urls[0]), ETHEREUM_RPC_URL (chains.ethereum.rpc_urls[0])" in unset.stderr
    )


def test_init_with_protocols_and_a_venue(tmp_path: Path) -> None:
    out = tmp_path / "arb.toml"
    got = watcher(
        "init",
        "--chain",
        "arbitrum",
        "--account",
        A,
        "--protocol",
        "gmx_v2",
        "--protocol",
        "hyperliquid",
        "-o",
        str(out),
    )
    assert got.returncode == 0, got.stderr
    doc = tomllib.loads(out.read_text())
    assert [d["protocol"] for d in doc["deployments"]] == ["gmx_v2"] and doc["venues"] == {
        "hyperliquid": {"protocol": "hyperliquid"}
    }
    check = watcher("config", "check", "-c", str(out), ARBITRUM_RPC_URL="http://127.0.0.1:9")
    assert check.returncode == 0 and "hyperliquid (hyperliquid, 1 accounts)" in check.stdout, check.stderr


def test_init_writes_to_the_c_file_and_to_stdout(tmp_path: Path) -> None:
    target = tmp_path / "from-env.toml"
    got = watcher("init", "--chain", "ethereum", "--account", A, MARGIN_WATCHER_CONFIG=str(target))
    assert got.returncode == 0 and target.exists()
    got = watcher("init", "--chain", "ethereum", "--account", A, "-o", "-", cwd=tmp_path)
    assert got.returncode == 0 and tomllib.loads(got.stdout)["chains"]["ethereum"]["chain_id"] == 1
    assert not (tmp_path / "config.toml").exists()


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "my.toml"
    out.write_text("# mine\n")
    got = watcher("init", "--chain", "ethereum", "--account", A, "-o", str(out))
    assert (
        got.returncode == 2
        and got.stderr.strip() == f"watcher: error: {out}: exists; give --force to overwrite it, or -o another file"
    )
    assert out.read_text() == "# mine\n"
    got = watcher("init", "--chain", "ethereum", "--account", A, "-o", str(out), "--force")
    assert got.returncode == 0 and "[chains.ethereum]" in out.read_text()


def test_init_names_what_is_wrong(tmp_path: Path) -> None:
    out = tmp_path / "my.toml"
    cases = [
        (
            ["--chain", "etherium", "--account", A],
            "--chain: unknown chain 'etherium' (known: arbitrum, avalanche, base, ethereum",
        ),
        (["--chain", "ethereum", "--account", "0x1234"], "--account: '0x1234' is not a 20-byte hex address"),
        (["--chain", "ethereum", "--account", A.upper().replace("0X", "0x")[:41] + "e"], "--account:"),
        (
            ["--chain", "ethereum", "--account", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"],
            "fails its EIP-55 checksum",
        ),
        (["--chain", "ethereum", "--account", A, "--account", A.lower()], f"--account: {A} is given twice"),
        (
            ["--chain", "ethereum", "--account", A, "--protocol", "aave_v9"],
            "--protocol: unknown protocol 'aave_v9' (known: aave_v3",
        ),
        (
            ["--chain", "ethereum", "--account", A, "--protocol", "gmx_v2"],
            "--protocol: gmx_v2 has no deployment on ethereum (it has: arbitrum, avalanche)",
        ),
        (
            ["--chain", "ethereum", "--account", A, "--protocol", "dydx_v4"],
            "--protocol: dydx_v4 accounts are not 0x addresses",
        ),
        (["--chain", "ethereum"], "the following arguments are required: --account"),
        (["--chain", "ethereum", "--account", A, "-o", str(tmp_path / "no" / "dir.toml")], "cannot write"),
    ]
    for args, expected in cases:
        got = watcher("init", *args, "-o", str(out)) if "-o" not in args else watcher("init", *args)
        line = got.stderr.strip()
        assert got.returncode == 2 and "\n" not in line and "Traceback" not in line, (args, got.stderr)
        assert expected in line, (expected, line)
        assert not out.exists()


def test_init_help() -> None:
    got = watcher("init", "--help")
    assert (
        got.returncode == 0 and "watcher init --chain ethereum --account" in got.stdout and "exit codes:" in got.stdout
    )
