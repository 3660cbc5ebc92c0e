"""Config validation: every mistake gives one line naming the key and the bad value, and a non-zero exit."""

from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from watcher.chain import redact_url
from watcher.cli import main
from watcher.config import ConfigError, load_config, parse_config, resolve_deployments

GOOD = """
[thresholds]
warn = 1.25
critical = "1.1"
target = 1.5

[chains.ethereum]
chain_id = 1
rpc_urls = ["http://127.0.0.1:1", { env = "MW_TEST_RPC" }]

[[deployments]]
protocol = "aave_v3"
chains = ["ethereum"]

[[deployments]]
protocol = "spark"
chains = ["ethereum"]

[[accounts]]
address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
label = "main"
protocols = ["spark"]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_good_config_resolves_deployments(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.thresholds.warn == 125 * 10**16 and cfg.thresholds.critical == 110 * 10**16
    deps = resolve_deployments(cfg)
    assert [(d.name, d.chain, d.pool_addresses_provider) for d in deps] == [
        ("aave_v3", "ethereum", "0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e"),
        ("spark", "ethereum", "0x02C3eA4e34C0cBd694D2adFa2c690EECbC1793eE"),
    ]


def test_protocol_options_reach_the_reader_through_the_config(tmp_path: Path) -> None:
    """Each protocol's own keys (its registered options model) come out on the deployment and in its reader."""
    from watcher.check import make_reader

    text = GOOD.replace(
        "[[accounts]]",
        '[[deployments]]\nprotocol = "maker"\nchains = ["ethereum"]\nvaults = [7, 9]\n\n'
        '[[deployments]]\nprotocol = "compound_v3"\nchains = ["ethereum"]\nmarkets = ["usdc", "WETH"]\n\n[[accounts]]',
        1,
    )
    deps = {(d.name, d.market): d for d in resolve_deployments(load_config(write(tmp_path, text)))}
    maker = deps[("maker", "")]
    assert maker.vaults == [7, 9] and make_reader(maker, []).vault_ids == [7, 9]
    assert sorted(m for n, m in deps if n == "compound_v3") == ["USDC", "WETH"]
    with pytest.raises(ConfigError, match=r"deployments\[2\]\.vaults\[0\]: must be at least 0 \(got -7\)"):
        load_config(write(tmp_path, text.replace("vaults = [7, 9]", "vaults = [-7]")))
    with pytest.raises(ConfigError, match=r"deployments\[3\]\.markets\[1\]: no compound_v3 market 'DOGE'"):
        resolve_deployments(load_config(write(tmp_path, text.replace('"WETH"]', '"DOGE"]'))))


def test_example_config_is_valid() -> None:
    cfg = load_config(Path(__file__).parent.parent / "config.toml")
    assert {d.name for d in resolve_deployments(cfg)} == {"aave_v3", "spark"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('chains = ["ethereum"]\n\n[[deployments]]', 'chainz = ["ethereum"]\n\n[[deployments]]'),
            "deployments[0].chainz: unknown key",
        ),
        (
            ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"),
            "accounts[0].address: '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD' fails its EIP-55 checksum",
        ),
        (
            ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x5aAeb6"),
            "accounts[0].address: '0x5aAeb6' is not a 20-byte hex address",
        ),
        (('protocol = "spark"', 'protocol = "sparkk"'), "deployments[1].protocol: unknown protocol 'sparkk'"),
        (
            ('chains = ["ethereum"]\n\n[[accounts]]', 'chains = ["mainnet"]\n\n[[accounts]]'),
            "deployments[1].chains: unknown chain 'mainnet'",
        ),
        (("chain_id = 1", "chain_id = 5"), "protocols/aave_v3.toml has no deployment on chain id 5"),
        (('protocols = ["spark"]', 'protocols = ["sprak"]'), "accounts[0].protocols: unknown deployment 'sprak'"),
        (("warn = 1.25", "warn = 1.05"), "thresholds: thresholds must satisfy 1 < critical < warn"),
        (("warn = 1.25", 'warn = "lots"'), "thresholds.warn: 'lots' is not a number"),
        (("chain_id = 1", 'chain_id = "one"'), "chains.ethereum.chain_id"),
        (("chain_id = 1", "chain_id = 1\ntimeout = inf"), "chains.ethereum.timeout: must be a finite number (got inf)"),
        (
            ("chain_id = 1", "chain_id = 1\ntimeout = 1e308"),
            "chains.ethereum.timeout: must be at most 600 (got 1e+308)",
        ),
        (("chain_id = 1", "chain_id = 1\ninterval = 0"), "chains.ethereum.interval: must be greater than 0 (got 0)"),
        (
            ("chain_id = 1", "chain_id = 1\ninterval = 12\nstale_after = 10"),
            "chains.ethereum: stale_after (10 s) must be more than the interval (12 s)",
        ),
        (
            ("chain_id = 1", 'chain_id = 1\nws_url = "https://node.example/ws"'),
            "chains.ethereum.ws_url: must be a ws:// or wss:// URL",
        ),
        (("[chains.ethereum]", '[chains."eth main"]'), "chains: 'eth main' is not a valid name: use 1 to 64 letters"),
        (('protocol = "spark"', 'protocol = "spark"\nname = "a:b"'), "deployments[1].name: 'a:b' is not a valid name"),
        (('protocols = ["spark"]', 'protocols = ["spark"]\n\n[storage]\npath = " "'), "storage.path: is empty"),
        # a protocol's own keys are its options model's: another protocol's key is a typo here
        (('protocol = "spark"', 'protocol = "spark"\nvaults = [1]'), "deployments[1].vaults: unknown key (a typo?)"),
        (
            ('protocol = "spark"', 'protocol = "spark"\npool_addresses_provider = "0x12"'),
            "deployments[1].pool_addresses_provider: '0x12' is not a 20-byte hex address",
        ),
    ],
)
def test_bad_config_names_key_and_value(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    with pytest.raises(ConfigError) as err:
        resolve_deployments(load_config(write(tmp_path, text)))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[chains\n"))


def test_missing_secret_env_names_key_not_value(monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    monkeypatch.delenv("MW_TEST_RPC", raising=False)
    cfg = parse_config(tomllib.loads(GOOD))
    with pytest.raises(
        ConfigError, match=r"chains.ethereum.rpc_urls\[1\]: environment variable MW_TEST_RPC is not set"
    ):
        cfg.chains["ethereum"].urls("ethereum")
    monkeypatch.setenv("MW_TEST_RPC", "https://rpc.invalid/v2/SECRETKEY")
    assert cfg.chains["ethereum"].urls("ethereum")[1].endswith("SECRETKEY")


def test_cli_bad_config_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, GOOD.replace("label", "lable"))
    assert main(["check", "--config", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "accounts[0].lable: unknown key" in err and "Traceback" not in err


def test_cli_unreachable_rpc_exit_2_without_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MW_TEST_RPC", "http://127.0.0.1:2/key/SECRETKEY?apikey=SECRETKEY")
    assert main(["check", "--config", str(write(tmp_path, GOOD))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "chains.ethereum.rpc_urls[0] (http://127.0.0.1:1) is unreachable" in err
    assert "chains.ethereum.rpc_urls[1] (http://127.0.0.1:2/...) is unreachable" in err
    assert "SECRETKEY" not in err


@pytest.mark.parametrize(
    "bad",
    [
        'rpc_urls = "https://mainnet.example/v3/SECRETKEY"',
        'rpc_urls = [{ url = "https://mainnet.example/v3/SECRETKEY" }]',
        'rpc_urls = [42, "https://mainnet.example/v3/SECRETKEY", 43]',
    ],
)
def test_config_errors_never_echo_rpc_urls(tmp_path: Path, bad: str) -> None:
    text = GOOD.replace('rpc_urls = ["http://127.0.0.1:1", { env = "MW_TEST_RPC" }]', bad)
    assert text != GOOD
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert "chains.ethereum.rpc_urls" in str(err.value) and "SECRETKEY" not in str(err.value)


def test_a_url_given_as_address_is_not_echoed(tmp_path: Path) -> None:
    text = GOOD.replace("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "https://rpc.example/SECRETKEY")
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert "accounts[0].address: a URL is not an address" in str(err.value) and "SECRETKEY" not in str(err.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://eth-mainnet.example/v2/SECRETKEY", "https://eth-mainnet.example/..."),
        ("https://user:SECRETKEY@node.example:8545", "https://node.example:8545"),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("https://node.example/?key=SECRETKEY", "https://node.example/..."),
        ("https://h:99999/SECRETKEY", "<unparsable URL>"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_cli_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_shipped_example_config_is_valid() -> None:
    root = Path(__file__).resolve().parent.parent
    cfg = load_config(root / "config.toml")
    assert {d.name for d in resolve_deployments(cfg)} == {"aave_v3", "spark"}


def test_every_protocols_file_resolves_on_each_of_its_chains() -> None:
    from watcher.config import resolve_venues
    from watcher.registry import chain_protocols, venue_protocols
    from watcher.resources import protocol_files

    for name, spec in protocol_files().items():
        adapter = spec["adapter"]
        if adapter in venue_protocols():
            data = {"venues": {"v": {"protocol": name, "accounts": []}}, "accounts": []}
            if adapter == "hyperliquid":
                data["accounts"] = [{"address": "0x" + "1" * 40}]
            else:
                data["venues"]["v"]["accounts"] = [{"address": "dydx1" + "q" * 38}]
            [venue] = resolve_venues(parse_config(data))
            assert venue.base_url.startswith("https://"), name
            continue
        key = chain_protocols()[adapter].entry_key
        chain_ids = sorted({d["chain_id"] for d in spec["deployments"].values()})
        for chain_id in chain_ids:
            dep: dict[str, object] = {"protocol": name, "chains": ["c"]}
            if adapter == "morpho_blue":
                dep["discover"] = True
            data = {
                "chains": {"c": {"chain_id": chain_id, "rpc_urls": ["http://127.0.0.1:1"]}},
                "deployments": [dep],
                "accounts": [{"address": "0x" + "1" * 40}],
            }
            deps = resolve_deployments(parse_config(data))
            entries = [d for d in spec["deployments"].values() if d["chain_id"] == chain_id]
            assert len(deps) == len(entries), (name, chain_id)
            assert {d.address for d in deps} == {to_checksum_address(e[key]) for e in entries}, (name, chain_id)
