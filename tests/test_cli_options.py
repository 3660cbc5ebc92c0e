"""The CLI's common options, through `watcher` as a process: -c/--config and MARGIN_WATCHER_CONFIG, --log-level,
--log-format, --no-color and NO_COLOR, one-line usage errors, help texts with examples and exit codes."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.loopback import free_port
from tests.test_bad_input import Counter, counter, run_config  # noqa: F401 - counter is a fixture

ROOT = Path(__file__).resolve().parent.parent


def env(**extra: str) -> dict[str, str]:
    """The child's environment: this checkout on the path, none of the variables these tests set themselves."""
    out = {k: v for k, v in os.environ.items() if k not in ("MARGIN_WATCHER_CONFIG", "NO_COLOR", "FORCE_COLOR")}
    return out | {"PYTHONPATH": str(ROOT)} | extra


def watcher(*args: str, cwd: Path = ROOT, **extra: str) -> subprocess.CompletedProcess[str]:
    """`watcher ARGS` as a process: exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env(**extra),
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["check", "--log-level", "loud"], ["--log-level", "'loud'"]),
        (["run", "--log-format", "xml"], ["--log-format", "'xml'"]),
        (["--log-level", "everything", "api"], ["--log-level", "'everything'"]),
        (["check", "--colour"], ["--colour"]),
        (["demo", "--steps", "many"], ["--steps", "'many'"]),
        (["frobnicate"], ["'frobnicate'"]),
    ],
)
def test_bad_option_values_are_one_line_and_exit_2(args: list[str], named: list[str]) -> None:
    got = watcher(*args)
    line = got.stderr.strip()
    assert got.returncode == 2 and "\n" not in line and got.stdout == "", got.stderr
    assert "error:" in line and "Traceback" not in line
    for part in named:
        assert part in line, (part, line)


def test_config_comes_from_c_then_the_environment_then_config_toml(tmp_path: Path) -> None:
    from_env = tmp_path / "from-env.toml"
    given = tmp_path / "given.toml"
    for path in (from_env, given):
        path.write_text("[thresholds]\nwarm = 1.3\n")  # a typo, so the error line names the file it read
    # the default: config.toml in the working directory
    (tmp_path / "config.toml").write_text("[chains]\nx = 1\n")
    got = watcher("check", cwd=tmp_path)
    assert got.returncode == 2 and got.stderr.startswith("watcher: error: config.toml: "), got.stderr
    got = watcher("check", MARGIN_WATCHER_CONFIG=str(from_env))
    assert got.returncode == 2 and f"{from_env}: " in got.stderr and "thresholds.warm: unknown key" in got.stderr
    for flag in ("-c", "--config"):
        got = watcher("check", flag, str(given), MARGIN_WATCHER_CONFIG=str(from_env))
        assert got.returncode == 2 and f"{given}: " in got.stderr and str(from_env) not in got.stderr, got.stderr
    # before the subcommand as well as after it
    got = watcher("-c", str(given), "check")
    assert got.returncode == 2 and f"{given}: " in got.stderr


@pytest.mark.parametrize("command", ["check", "run", "api", "test-notify", "demo"])
def test_help_has_examples_and_exit_codes(command: str) -> None:
    got = watcher(command, "--help")
    assert got.returncode == 0
    out = got.stdout
    assert f"watcher {command}" in out and "examples:" in out and "exit codes:" in out
    for option in ("-c FILE, --config FILE", "--log-level", "--log-format", "--no-color"):
        assert option in out, (command, option)
    assert "2  a configuration, usage or connection problem" in out and "4  an internal error" in out
    top = watcher("--help").stdout
    assert "watcher init --chain ethereum" in top and "exit codes:" in top


class ApiProcess:
    """`watcher api` on a free port over an empty store, stopped with SIGTERM; its stderr collected."""

    def __init__(self, tmp_path: Path) -> None:
        self.config = tmp_path / "api.toml"
        self.port = free_port()
        self.config.write_text(
            f"""
[venues.hl]
protocol = "hyperliquid"
base_url = "http://127.0.0.1:9"

[[accounts]]
address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"

[storage]
path = "{tmp_path / "w.db"}"

[api]
port = {self.port}
"""
        )

    def _wait_listening(self, proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
        """Until GET /health answers (it serves the store from the start), so SIGTERM finds the handlers set."""
        end = time.monotonic() + 30
        while time.monotonic() < end and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("watcher api did not listen")

    def run(self, *args: str, tty: bool = False, **extra: str) -> str:
        """Start it, wait for it to listen, stop it; its stderr."""
        argv = [sys.executable, "-m", "watcher.cli", "api", "-c", str(self.config), *args]
        if not tty:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env(**extra), stderr=subprocess.PIPE, text=True)
            self._wait_listening(proc)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
            return err
        # a terminal on stderr: what a user at a shell sees
        leader, follower = pty.openpty()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env(**extra), stderr=follower, stdout=subprocess.DEVNULL)
        os.close(follower)
        self._wait_listening(proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        return b"".join(chunks).decode()


def test_log_format_json_off_a_terminal_text_on_one(tmp_path: Path) -> None:
    api = ApiProcess(tmp_path)
    lines = api.run().splitlines()
    docs = [json.loads(line) for line in lines]  # every line JSON: daemons and the tests keep their format
    assert any(d["msg"] == "api listening" for d in docs) and any(d["msg"] == "stopped" for d in docs)
    text = api.run("--log-format", "text").splitlines()
    assert text and not any(line.startswith("{") for line in text)
    assert any(" info " in line and "watcher.api: api listening" in line and "port=" in line for line in text)
    on_tty = api.run(tty=True)
    assert "watcher.api: api listening" in on_tty and '"msg"' not in on_tty
    assert "\x1b[" in on_tty  # coloured level names on a terminal
    forced_json = api.run("--log-format", "json", tty=True)
    assert '"msg": "api listening"' in forced_json


def test_log_level_filters(tmp_path: Path) -> None:
    api = ApiProcess(tmp_path)
    assert '"api listening"' in api.run("--log-level", "info")
    quiet = api.run("--log-level", "warning")
    assert "api listening" not in quiet and "stopped" not in quiet
    debug = api.run("--log-level", "debug")
    assert any(json.loads(line)["level"] == "debug" for line in debug.splitlines())


def test_no_color_and_NO_COLOR_drop_the_escape_codes(tmp_path: Path) -> None:
    api = ApiProcess(tmp_path)
    assert "\x1b[" in api.run("--log-format", "text", FORCE_COLOR="1")
    plain = api.run("--log-format", "text", "--no-color", FORCE_COLOR="1")
    assert "api listening" in plain and "\x1b[" not in plain
    plain_env = api.run("--log-format", "text", FORCE_COLOR="1", NO_COLOR="1")
    assert "api listening" in plain_env and "\x1b[" not in plain_env
    on_tty = api.run("--no-color", tty=True)
    assert "api listening" in on_tty and "\x1b[" not in on_tty


def test_scheduler_lines_only_at_debug(tmp_path: Path, counter: Counter) -> None:  # noqa: F811
    cfg = run_config(tmp_path, counter)

    def run(*args: str) -> list[dict[str, object]]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "watcher.cli", "run", "-c", str(cfg), *args],
            cwd=ROOT,
            env=env(),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # until the daemon says it started: the scheduler started before it
            seen.append(line)
            if '"msg": "started"' in line:
                break
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
        return [json.loads(line) for line in [*seen, *rest.splitlines()] if line.startswith("{")]

    default = run()
    assert any(d["msg"] == "started" for d in default)
    assert not [d for d in default if str(d["logger"]).startswith("apscheduler")]
    debug = run("--log-level", "debug")
    assert [d for d in debug if str(d["logger"]).startswith("apscheduler")]
