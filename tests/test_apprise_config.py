"""The [notify] keys apprise, levels, quiet_hours and fallback through the config file and the CLI: bad values are
one line naming the key and exit 2, missing URLs are named with every other missing secret, test-notify uses them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.apprise_standin import HookStandIn
from tests.configs import write_toml
from tests.processes import REPO_ROOT, child_env

SECRET = "APPRISE-URL-SECRET"


def base(tmp_path: Path, notify: dict[str, Any]) -> dict[str, Any]:
    """A config that parses (its node is never asked: every case stops before any RPC) with this [notify]."""
    return {
        "chains": {"local": {"chain_id": 31337, "rpc_urls": ["http://127.0.0.1:9"]}},
        "deployments": [{"protocol": "aave_v3", "chains": ["local"], "name": "a", "address": "0x" + "11" * 20}],
        "accounts": [{"address": "0x" + "22" * 20}],
        "storage": {"path": str(tmp_path / "w.db")},
        "api": {"enabled": False},
        "notify": notify,
    }


def watcher(tmp_path: Path, command: str, notify: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    cfg = write_toml(tmp_path / "c.toml", base(tmp_path, notify))
    return subprocess.run(
        [sys.executable, "-m", "watcher.cli", command, "--config", str(cfg)],
        cwd=REPO_ROOT,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def hook() -> Any:
    server = HookStandIn().start()
    yield server
    server.stop()


TG = {"token": {"env": "MW_TEST_TG_TOKEN"}, "chat_id": "42", "base_url": "http://127.0.0.1:9"}


@pytest.mark.parametrize(
    ("notify", "named"),
    [
        ({"telegram": TG | {"levels": ["warning"]}}, "notify.telegram.levels: 'warning' is not a level"),
        ({"telegram": TG | {"levels": []}}, "notify.telegram.levels: is empty"),
        ({"apprise": [{"url": {"env": "X"}, "quiet_hours": "22:00"}]}, "notify.apprise[0].quiet_hours: '22:00'"),
        ({"apprise": [{"url": {"env": "X"}, "quiet_hours": "7:00-7:00"}]}, "notify.apprise[0].quiet_hours"),
        ({"apprise": [{"url": {"env": "X"}, "quiet_tz": "Mars/Base"}]}, "'Mars/Base' is not a time zone"),
        ({"apprise": [{"url": {"env": "X"}, "fallback": "pager"}]}, "apprise[0].fallback: 'pager' is not a configured"),
        ({"apprise": [{"url": {"env": "X"}, "fallback": "apprise:1"}]}, "cannot be its own fallback"),
        ({"apprise": [{"url": {"env": "X"}, "name": "email"}]}, "'email' is a built-in channel's name"),
        ({"apprise": [{"url": {"env": "X"}, "name": "a"}, {"url": {"env": "Y"}, "name": "a"}]}, "'a' names two"),
        ({"apprise": [{"url": "json://127.0.0.1/x"}]}, "notify.apprise[0].url"),
        ({"apprise": [{"url": {"env": "X"}, "timeout": 0}]}, "notify.apprise[0].timeout"),
        ({"apprise": [{"url": {"env": "X"}, "levle": ["warn"]}]}, "notify.apprise[0].levle"),
    ],
)
def test_a_bad_delivery_key_is_one_line_naming_it(tmp_path: Path, notify: dict[str, Any], named: str) -> None:
    done = watcher(tmp_path, "run", notify)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_missing_apprise_urls_are_named_with_every_other_missing_secret(tmp_path: Path) -> None:
    notify = {
        "telegram": TG | {"token": {"env": "MW_UNSET_TG"}},
        "apprise": [{"url": {"env": "MW_UNSET_NTFY"}}, {"name": "pager", "url": {"file": str(tmp_path / "none")}}],
    }
    done = watcher(tmp_path, "run", notify)
    assert done.returncode == 2
    line = done.stderr.strip()
    assert (
        "environment variables not set: MW_UNSET_TG (notify.telegram.token), MW_UNSET_NTFY (notify.apprise[0].url)"
        in line
    )
    assert "notify.apprise[1].url: cannot read secret file" in line


def test_a_url_apprise_cannot_use_is_named_without_echoing_it(tmp_path: Path) -> None:
    done = watcher(tmp_path, "run", {"apprise": [{"url": {"env": "MW_A"}}]}, {"MW_A": f"nosuch://me:{SECRET}@host/x"})
    assert done.returncode == 2
    assert "notify.apprise[0].url: not a URL apprise can use (the scheme 'nosuch'" in done.stderr
    assert SECRET not in done.stderr + done.stdout


def test_test_notify_sends_through_each_apprise_channel(tmp_path: Path, hook: HookStandIn) -> None:
    """test-notify reports each apprise channel by name; a refusing one FAILED with its status, no URL shown."""
    notify = {"apprise": [{"name": "hook", "url": {"env": "MW_A"}}, {"url": {"env": "MW_B"}}]}
    env = {"MW_A": hook.json_url("a", f"u:{SECRET}@"), "MW_B": hook.ntfy_url("b")}
    done = watcher(tmp_path, "test-notify", notify, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hook: ok" in done.stdout and "apprise:2: ok" in done.stdout
    assert sorted(p.path for p in hook.posts) == ["/", "/a"]
    assert all("This is a test message" in p.text for p in hook.posts)
    hook.refuse_all(401)
    done = watcher(tmp_path, "test-notify", notify, env)
    assert done.returncode == 1
    assert "hook: FAILED: hook: refused with HTTP 401" in done.stdout
    assert SECRET not in done.stdout + done.stderr
