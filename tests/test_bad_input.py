"""Bad local input through `watcher check` and `watcher run`: exit 2 and one line naming the key, before any check.

Every case runs the real command as a subprocess against a config file. A counting HTTP server stands in for the
RPC node, the venue and Telegram, so "before any check" is asserted as "nothing was asked of anyone".
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
SECRET = "SECRETKEY-7d1f"  # never to appear in any output


class Counter:
    """An HTTP server on 127.0.0.1 that answers 500 to everything and counts what it was asked."""

    def __init__(self) -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                hits.append(self.path)
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def counter() -> Iterator[Counter]:
    c = Counter()
    yield c
    c.close()


def run(command: str, config: Path, timeout: float = 20.0) -> tuple[int, str, float]:
    """`watcher <command> --config <config>`: exit code, stderr and seconds taken."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "watcher.cli", command, "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k != "MARGIN_WATCHER_DEBUG"},
    )
    return proc.returncode, proc.stderr, time.monotonic() - start


def assert_one_line(code: int, err: str, *expected: str) -> str:
    """Exit 2, exactly one line on stderr, which holds every expected part and no secret."""
    line = err.strip()
    assert code == 2, err
    assert "\n" not in line, err
    assert line.startswith("watcher: error: "), err
    assert "internal error" not in line and "Traceback" not in line
    for part in expected:
        assert part in line, (part, line)
    assert SECRET not in err
    return line


def chain_config(tmp_path: Path, counter: Counter, extra: str = "", chain: str = "", rpc: str = "") -> Path:
    """A config of one chain (its RPC the counting server) for `watcher check`."""
    text = f"""
[chains.local]
chain_id = 31337
rpc_urls = ["{counter.url}"{rpc}]
{chain}

[[deployments]]
protocol = "aave_v3"
name = "local_aave"
chains = ["local"]
pool_addresses_provider = "0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e"

[[accounts]]
address = "{ACCOUNT}"
{extra}
"""
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def run_config(
    tmp_path: Path, counter: Counter, *, storage: str | None = None, token: str | None = None, extra: str = ""
) -> Path:
    """A config for `watcher run`: one venue, Telegram and the API, all pointed at the counting server."""
    if token is None:
        good = tmp_path / "good-token"
        good.write_text(SECRET + "\n")
        token = str(good)
    db = str(tmp_path / "w.db") if storage is None else storage
    text = f"""
[venues.hl]
protocol = "hyperliquid"
base_url = "{counter.url}"
interval = 0.2

[[accounts]]
address = "{ACCOUNT}"

[storage]
path = {toml_str(db)}

[notify.telegram]
token = {{ file = {toml_str(token)} }}
chat_id = "42"
base_url = "{counter.url}"

[api]
enabled = false
{extra}
"""
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def toml_str(value: str) -> str:
    """A TOML basic string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- 1. text that is not UTF-8


def test_config_file_not_utf8(tmp_path: Path, counter: Counter) -> None:
    cfg = chain_config(tmp_path, counter)
    good = cfg.read_bytes()
    raw = good.replace(b'label = ""', b"") + b'label = "caf\xe9"\n'
    cfg.write_bytes(raw)
    offset = raw.index(b"\xe9")
    for command in ("check", "run"):
        code, err, _ = run(command, cfg)
        line = assert_one_line(code, err, f"{cfg}: not UTF-8 text (byte 0xe9 at offset {offset})")
        print(line)
    assert cfg.read_bytes() == raw and counter.hits == []


def test_config_file_too_large_or_a_directory(tmp_path: Path, counter: Counter) -> None:
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 200_000)
    code, err, _ = run("check", big)
    print(assert_one_line(code, err, f"{big}: larger than 1024 KiB: not a config file"))
    code, err, _ = run("check", tmp_path)
    print(assert_one_line(code, err, f"{tmp_path}: cannot read: Is a directory"))


def _non_utf8_secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(SECRET.encode() + b"\xff\xfe")
    return path


def test_rpc_url_secret_file_not_utf8(tmp_path: Path, counter: Counter) -> None:
    secret = _non_utf8_secret(tmp_path)
    cfg = chain_config(tmp_path, counter, rpc=f", {{ file = {toml_str(str(secret))} }}")
    code, err, _ = run("check", cfg)
    print(assert_one_line(code, err, f"chains.local.rpc_urls[1]: secret file {secret} is not UTF-8 text"))
    assert counter.hits == []  # not even the good URL was asked: the secrets are read before any request


@pytest.mark.parametrize("key", ["notify.telegram.token", "notify.email.password", "api.token"])
def test_notify_and_api_secret_files_not_utf8(tmp_path: Path, counter: Counter, key: str) -> None:
    secret = _non_utf8_secret(tmp_path)
    ref = f"{{ file = {toml_str(str(secret))} }}"
    if key == "notify.telegram.token":
        cfg = run_config(tmp_path, counter, token=str(secret))
    elif key == "notify.email.password":
        email = f"""
[notify.email]
host = "127.0.0.1"
port = 1
security = "none"
username = "me"
password = {ref}
sender = "w@example.org"
recipients = ["me@example.org"]
"""
        cfg = run_config(tmp_path, counter, extra=email)
    else:
        cfg = run_config(tmp_path, counter)
        cfg.write_text(cfg.read_text().replace("[api]\nenabled = false", f"[api]\nport = 0\ntoken = {ref}"))
    code, err, _ = run("run", cfg)
    print(assert_one_line(code, err, f"{key}: secret file {secret} is not UTF-8 text"))
    assert counter.hits == []
    assert secret.read_bytes() == SECRET.encode() + b"\xff\xfe"


# --- 2. secret files that are not regular files, or too large


def test_secret_fifo_is_refused_at_once(tmp_path: Path, counter: Counter) -> None:
    fifo = tmp_path / "token.fifo"
    os.mkfifo(fifo)  # no writer ever opens it: reading it would block forever
    cfg = run_config(tmp_path, counter, token=str(fifo))
    code, err, took = run("run", cfg, timeout=10)
    print(assert_one_line(code, err, f"notify.telegram.token: secret file {fifo} is a FIFO (named pipe)"), took)
    assert took < 5.0 and counter.hits == []
    cfg = chain_config(tmp_path, counter, rpc=f", {{ file = {toml_str(str(fifo))} }}")
    code, err, took = run("check", cfg, timeout=10)
    assert_one_line(code, err, f"chains.local.rpc_urls[1]: secret file {fifo} is a FIFO (named pipe)")
    assert took < 5.0


@pytest.mark.parametrize("kind", ["directory", "device", "large", "empty", "missing"])
def test_secret_file_kinds_refused(tmp_path: Path, counter: Counter, kind: str) -> None:
    path = tmp_path / "token"
    if kind == "directory":
        path.mkdir()
        expected = f"secret file {path} is a directory, not a regular file"
    elif kind == "device":
        path = Path("/dev/zero")  # endless: a read would fill memory
        expected = "secret file /dev/zero is a character device, not a regular file"
    elif kind == "large":
        path.write_text("x" * (64 * 1024 + 1))
        expected = f"secret file {path} is larger than 64 KiB"
    elif kind == "empty":
        path.write_text(" \n")
        expected = f"secret file {path} is empty"
    else:
        expected = f"cannot read secret file {path}: No such file or directory"
    cfg = run_config(tmp_path, counter, token=str(path))
    code, err, took = run("run", cfg)
    print(assert_one_line(code, err, f"notify.telegram.token: {expected}"), f"{took:.2f}s")
    assert took < 5.0 and counter.hits == []


def test_secret_file_at_64_kib_is_read(tmp_path: Path, counter: Counter) -> None:
    """The bound is not off by one: a 64 KiB URL file is read, and the check goes on to ask the node."""
    path = tmp_path / "url"
    url = counter.url + "/" + "k" * (64 * 1024 - len(counter.url) - 2) + "\n"
    path.write_text(url)
    assert path.stat().st_size == 64 * 1024  # exactly the bound
    cfg = chain_config(tmp_path, counter, rpc=f", {{ file = {toml_str(str(path))} }}")
    code, err, _ = run("check", cfg)
    assert code != 4 and "secret file" not in err and "internal error" not in err
    assert counter.hits  # the URLs were read, and the node asked


# --- 3. storage.path


@contextmanager
def _immutable(path: Path) -> Iterator[None]:
    """Make `path` read-only even for root (who ignores permission bits): chattr +i, or chmod for anyone else."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)


def _storage_case(tmp_path: Path, case: str) -> tuple[str, str]:
    """(storage.path as written, the expected message) for each bad storage path."""
    if case == "empty":
        return "", "storage.path: is empty: give the path of the database file"
    if case == "directory":
        return str(tmp_path), f"storage.path: {tmp_path}: is a directory; give a file in it"
    if case == "under a file":
        afile = tmp_path / "afile"
        afile.write_text("mine\n")
        return str(afile / "x.db"), f"storage.path: {afile / 'x.db'}: {afile} is a file, not a directory"
    if case == "device":
        return "/dev/null", "storage.path: /dev/null: is not a regular file"
    if case in ("proc", "sys"):
        # root passes access() here, but the file system still refuses: the OS's reason is shown
        d = f"/{case}"
        reason = {"proc": "No such file or directory", "sys": "Permission denied"}[case]
        why = (
            f"cannot write in its directory {d}: {reason}"
            if os.geteuid() == 0
            else f"its directory {d} is not writable"
        )
        return f"{d}/x.db", f"storage.path: {d}/x.db: {why}"
    if case == "not a database":
        bad = tmp_path / "notes.db"
        bad.write_text("my notes, not a database\n" * 200)
        return str(bad), f"storage.path: {bad}: cannot open the database: file is not a database"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["empty", "directory", "under a file", "device", "proc", "sys", "not a database"])
def test_bad_storage_path(tmp_path: Path, counter: Counter, case: str) -> None:
    path, expected = _storage_case(tmp_path, case)
    cfg = run_config(tmp_path, counter, storage=path)
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    code, err, took = run("run", cfg)
    print(assert_one_line(code, err, expected), f"{took:.2f}s")
    assert counter.hits == []  # no check ran, and no message was sent
    after = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before  # nothing the user wrote was touched
    code, err, _ = run("api", cfg)  # `watcher api` opens the same store
    assert_one_line(code, err, expected)
    assert after == {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}


def test_read_only_storage(tmp_path: Path, counter: Counter) -> None:
    ro_dir = tmp_path / "ro"
    ro_dir.mkdir()
    db = tmp_path / "rw" / "w.db"
    db.parent.mkdir()
    db.write_bytes(b"")  # an empty file is a new database to SQLite
    for target, path, expected in (
        (ro_dir, ro_dir / "w.db", f"storage.path: {ro_dir / 'w.db'}: its directory {ro_dir} is not writable"),
        (ro_dir, ro_dir / "sub" / "w.db", f"storage.path: {ro_dir / 'sub' / 'w.db'}: cannot create its directory"),
        (db, db, f"storage.path: {db}: the file is not writable"),
    ):
        cfg = run_config(tmp_path, counter, storage=str(path))
        with _immutable(target):
            assert not os.access(target, os.W_OK)
            code, err, _ = run("run", cfg)
        print(assert_one_line(code, err, expected))
        assert counter.hits == []
    assert list(ro_dir.iterdir()) == [] and db.read_bytes() == b""


def test_good_storage_path_is_created(tmp_path: Path, counter: Counter) -> None:
    """The checks refuse only what is bad: a path in directories not made yet is created and the daemon runs."""
    db = tmp_path / "new" / "dirs" / "w.db"
    cfg = run_config(tmp_path, counter, storage=str(db))
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcher.cli", "run", "--config", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not counter.hits and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert counter.hits, "the daemon never asked the venue"
        assert db.is_file()
        assert not [p for p in db.parent.iterdir() if p.name.endswith(".probe")]  # the write probe is gone
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- 4. numbers TOML allows but no duration means


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("interval = inf", "chains.local.interval: must be a finite number (got inf)"),
        ("timeout = inf", "chains.local.timeout: must be a finite number (got inf)"),
        ("timeout = -inf", "chains.local.timeout: must be a finite number (got -inf)"),
        ("timeout = 1e308", "chains.local.timeout: must be at most 600 (got 1e+308)"),
        ("timeout = 0", "chains.local.timeout: must be greater than 0 (got 0)"),
        ("max_block_age = nan", "chains.local.max_block_age: must be a finite number (got nan)"),
        ("max_response_bytes = 100", "chains.local.max_response_bytes: must be at least 10000 (got 100)"),
    ],
)
def test_non_finite_and_huge_numbers(tmp_path: Path, counter: Counter, setting: str, expected: str) -> None:
    cfg = chain_config(tmp_path, counter, chain=setting)
    code, err, _ = run("check", cfg)
    print(assert_one_line(code, err, expected))
    assert counter.hits == []


def test_non_finite_numbers_elsewhere(tmp_path: Path, counter: Counter) -> None:
    cfg = run_config(tmp_path, counter)
    cfg.write_text(cfg.read_text().replace("interval = 0.2", "interval = inf") + "\n[notify]\nretry_max = nan\n")
    code, err, _ = run("run", cfg)
    line = assert_one_line(code, err, "venues.hl.interval: must be a finite number (got inf)")
    assert "notify.retry_max: must be a finite number (got nan)" in line
    print(line)
    assert counter.hits == []


# --- 5. names that go into alert ids and URLs


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("[chains.local]", '[chains."my chain"]', "chains: 'my chain' is not a valid name"),
        ("[chains.local]", '[chains."a#b"]', "chains: 'a#b' is not a valid name"),
        ("[chains.local]", '[chains.".."]', "chains: '..' is not a valid name"),
        ("[chains.local]", '[chains."x\\ny"]', "chains: 'x\\ny' is not a valid name"),
        ('name = "local_aave"', 'name = "aave/main"', "deployments[0].name: 'aave/main' is not a valid name"),
        ('name = "local_aave"', f'name = "{"n" * 65}"', "deployments[0].name: 'nnnnnnnn"),
        ('protocol = "aave_v3"', 'protocol = "my aave"', "deployments[0].protocol: 'my aave' is not a valid name"),
    ],
)
def test_bad_names(tmp_path: Path, counter: Counter, old: str, new: str, expected: str) -> None:
    cfg = chain_config(tmp_path, counter)
    text = cfg.read_text()
    assert old in text
    cfg.write_text(text.replace(old, new, 1))
    code, err, _ = run("check", cfg)
    line = assert_one_line(code, err, expected, "use 1 to 64 letters, digits, '_', '.' or '-'")
    print(line)
    assert counter.hits == []


def test_bad_venue_name(tmp_path: Path, counter: Counter) -> None:
    cfg = run_config(tmp_path, counter)
    cfg.write_text(cfg.read_text().replace("[venues.hl]", '[venues."hl:main"]'))
    code, err, _ = run("run", cfg)
    print(assert_one_line(code, err, "venues: 'hl:main' is not a valid name"))
    assert counter.hits == []


def test_good_names_pass(tmp_path: Path, counter: Counter) -> None:
    """Dots, dashes and underscores are names: the check goes on to ask the node."""
    cfg = chain_config(tmp_path, counter)
    text = cfg.read_text().replace("[chains.local]", '[chains."eth-main.v2_1"]')
    cfg.write_text(text.replace('chains = ["local"]', 'chains = ["eth-main.v2_1"]'))
    code, err, _ = run("check", cfg)
    assert code != 4 and "not a valid name" not in err and "internal error" not in err
    assert counter.hits  # the config was taken: the node was asked


# --- 6. secrets given by environment variables that are not set


def test_every_unset_variable_is_named_at_once(tmp_path: Path, counter: Counter) -> None:
    """Three missing variables (two chains' URLs, the Telegram token): one line names all three, nothing is asked."""
    cfg = run_config(tmp_path, counter)
    text = cfg.read_text().replace(
        f"token = {{ file = {toml_str(str(tmp_path / 'good-token'))} }}", 'token = { env = "MW_T_TG_TOKEN" }'
    )
    text += """
[chains.one]
chain_id = 1
rpc_urls = [{ env = "MW_T_ONE_URL" }]
[chains.two]
chain_id = 8453
rpc_urls = ["http://127.0.0.1:9", { env = "MW_T_TWO_URL" }]

[[deployments]]
protocol = "aave_v3"
chains = ["one", "two"]
"""
    cfg.write_text(text)
    code, err, _ = run("run", cfg)
    line = assert_one_line(
        code,
        err,
        "environment variables not set: ",
        "MW_T_ONE_URL (chains.one.rpc_urls[0])",
        "MW_T_TWO_URL (chains.two.rpc_urls[1])",
        "MW_T_TG_TOKEN (notify.telegram.token)",
    )
    print(line)
    assert counter.hits == []
    # `watcher check` needs no notify secret: only the chains' variables are named
    code, err, _ = run("check", cfg)
    line = assert_one_line(code, err, "MW_T_ONE_URL", "MW_T_TWO_URL")
    assert "MW_T_TG_TOKEN" not in line and counter.hits == []


def test_the_shipped_config_runs_with_only_eth_rpc_url_set(counter: Counter) -> None:
    """README step 2: with only ETH_RPC_URL exported, `watcher check` on the shipped config.toml asks that node."""
    env = {k: v for k, v in os.environ.items() if k not in ("MARGIN_WATCHER_DEBUG", "ETH_RPC_URL", "BASE_RPC_URL")}
    argv = [sys.executable, "-m", "watcher.cli", "check", "--config", str(ROOT / "config.toml")]
    unset = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30, env=env)
    assert_one_line(unset.returncode, unset.stderr, "environment variable not set: ETH_RPC_URL")
    assert "BASE_RPC_URL" not in unset.stderr and counter.hits == []
    got = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=30, env=env | {"ETH_RPC_URL": counter.url}
    )
    # the counting node answers 500: a connection problem (exit 2) naming the URL's key, after asking it
    line = assert_one_line(got.returncode, got.stderr, "chains.ethereum.rpc_urls[0]")
    print(line)
    assert counter.hits and "not set" not in line
