"""The systemd unit as shipped (contrib/margin-watcher.service), and MARGIN_WATCHER_DB, which it sets.

`systemd-analyze verify` (and `security --offline`) run where systemd-analyze is installed, else skip saying so; the
rest reads the unit and does what systemd would with it: its environment, its command line, the notify socket.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.install_helpers import api_process, shipped_config, wait_api, watcher_api
from tests.loopback import free_port
from tests.processes import REPO_ROOT, WatcherProcess, child_env
from tests.processes import wait_for as wait_until
from tests.run_harness import RunSetup, run_market, run_setup, telegram_standin
from tests.test_sdnotify import NotifySocket
from watcher.cli import parser

__all__ = ["run_market", "run_setup", "telegram_standin", "watcher_api"]  # fixtures, imported for pytest

UNIT = REPO_ROOT / "contrib" / "margin-watcher.service"


# --- the systemd unit ----------------------------------------------------------------------------------------------


def unit_entries(text: str) -> dict[str, list[tuple[str, str]]]:
    """Per section, its (key, value) lines in order: systemd allows a key more than once."""
    out: dict[str, list[tuple[str, str]]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        out[section].append((key.strip(), value.strip()))
    return out


def service() -> dict[str, str]:
    """The [Service] section, the last value of each key."""
    return dict(unit_entries(UNIT.read_text())["Service"])


def venv_watcher() -> str:
    """The watcher this test runs under: the venv's console script, else this Python running the module."""
    script = Path(sys.executable).with_name("watcher")
    return str(script) if script.exists() else f"{sys.executable} -m watcher.cli"


def test_the_unit_is_type_notify_with_a_watchdog_a_dynamic_user_and_hardening() -> None:
    s = service()
    assert s["Type"] == "notify" and s["Restart"] == "on-failure"
    assert float(s["WatchdogSec"]) > 0
    assert s["DynamicUser"] == "yes" and s["StateDirectory"] == "margin-watcher"
    for key in ("ProtectHome", "PrivateTmp", "NoNewPrivileges"):
        assert s[key] == "yes", key
    assert s["ProtectSystem"] == "strict"
    assert s["EnvironmentFile"].lstrip("-").startswith("/etc/margin-watcher/")
    # the database in the StateDirectory: %S is /var/lib for a system service
    assert s["Environment"] == "MARGIN_WATCHER_DB=%S/margin-watcher/watcher.db"
    argv = shlex.split(s["ExecStart"])
    assert parser().parse_args(argv[1:]).func.__name__ == "cmd_run", argv


@pytest.fixture
def local_unit(tmp_path: Path) -> Path:
    """The shipped unit with ExecStart pointed at this venv's watcher: verify wants the binary to exist."""
    argv = shlex.split(service()["ExecStart"])
    text = UNIT.read_text().replace(f"ExecStart={argv[0]} ", f"ExecStart={venv_watcher()} ")
    assert text != UNIT.read_text()
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here")
    return tool


def test_systemd_analyze_verify_accepts_the_unit(local_unit: Path) -> None:
    out = subprocess.run(
        [systemd_analyze(), "verify", str(local_unit)], capture_output=True, text=True, timeout=60, check=False
    )
    # an unknown key or a bad value is only a warning line (exit 0): none may name our unit
    mine = [line for line in (out.stdout + out.stderr).splitlines() if UNIT.name in line or UNIT.stem in line]
    assert out.returncode == 0 and mine == [], out.stdout + out.stderr


def test_systemd_analyze_verify_catches_a_broken_copy(local_unit: Path) -> None:
    # the check above would notice a mistake: a typo in a key and a missing binary
    broken = local_unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
    local_unit.write_text(broken.replace(f"ExecStart={venv_watcher()}", "ExecStart=/nonexistent/watcher"))
    out = subprocess.run(
        [systemd_analyze(), "verify", str(local_unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode != 0 and "NoNewPrivilege" in out.stderr, out.stderr


def test_systemd_analyze_security_rates_the_unit_well_exposed_below_2(local_unit: Path) -> None:
    tool = systemd_analyze()
    if "--offline" not in subprocess.run([tool, "--help"], capture_output=True, text=True, check=False).stdout:
        pytest.skip("this systemd-analyze has no `security --offline` (systemd before 250)")
    # --threshold is on the 0-100 scale the report shows divided by ten
    out = subprocess.run(
        [tool, "security", "--offline=yes", "--threshold=20", str(local_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr


def test_the_units_command_line_and_environment_put_the_database_in_the_state_directory(
    run_setup: RunSetup, tmp_path: Path
) -> None:
    """What systemd does with the unit, done here: its Environment= (%S expanded), $STATE_DIRECTORY, the notify
    socket and $WATCHDOG_USEC from WatchdogSec, then ExecStart's arguments with our config."""
    s = service()
    state_root = tmp_path / "var-lib"
    state = state_root / s["StateDirectory"]
    state.mkdir(parents=True)
    key, _, value = s["Environment"].partition("=")
    sd = NotifySocket(f"@mw-unit-{tmp_path.name}-{free_port()}")
    env = {
        key: value.replace("%S", str(state_root)),
        "STATE_DIRECTORY": str(state),
        "NOTIFY_SOCKET": sd.address,
        "WATCHDOG_USEC": str(int(float(s["WatchdogSec"]) * 1_000_000)),
    }
    argv = shlex.split(s["ExecStart"])
    assert argv[1:] == ["run", "--config", "/etc/margin-watcher/config.toml"]
    try:
        proc = WatcherProcess(run_setup.write_config(), env=env)
        run_setup._procs.append(proc)
        proc.start()
        wait_until(lambda: sd.having("READY", "1"), 30, what="READY=1")
        assert sd.having("WATCHDOG", "1")  # the first ping comes at once; the next after WatchdogSec / 2
        assert (state / "watcher.db").is_file()
        assert not run_setup.db_path.exists()  # the config's storage.path lost to MARGIN_WATCHER_DB
        assert proc.stop() == 0
    finally:
        sd.close()


def test_margin_watcher_db_wins_over_storage_path(watcher_api: tuple[int, Path], tmp_path: Path) -> None:
    _, db = watcher_api
    assert db.is_file()
    assert not (tmp_path / "from-config.db").exists()


def test_an_empty_margin_watcher_db_leaves_storage_path(tmp_path: Path) -> None:
    port = free_port()
    proc = api_process(shipped_config(tmp_path, port), {"MARGIN_WATCHER_DB": ""})
    try:
        wait_api(proc, port)
        assert (tmp_path / "from-config.db").is_file()
    finally:
        proc.terminate()
        proc.wait(15)


def test_a_margin_watcher_db_that_cannot_hold_a_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    out = subprocess.run(
        [sys.executable, "-m", "watcher.cli", "api", "--config", str(shipped_config(tmp_path, free_port()))],
        cwd=REPO_ROOT,
        env=child_env({"MARGIN_WATCHER_DB": str(tmp_path / "a-file" / "watcher.db")}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"watcher: error: storage.path: {tmp_path}/a-file/watcher.db: {tmp_path}/a-file is a file, not a directory"
    ]


def test_the_readme_installs_the_unit_where_its_execstart_and_config_point() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### As a systemd service") : readme.index("### In a container")]
    argv = shlex.split(service()["ExecStart"])
    venv = str(Path(argv[0]).parent.parent)
    assert f"python3 -m venv {venv} && {venv}/bin/pip install ." in section
    assert f" {argv[-1]} " in section and service()["EnvironmentFile"].lstrip("-") in section
