"""`watcher run` and `watcher check` as a user runs them: subprocesses on a config file, their logs and the API.

`WatcherProcess` (`watcher run`, its JSON log lines parsed, the API polled) and `check_json` (`watcher check
--json`) run `[sys.executable, "-m", "watcher.cli", ...]` with cwd and PYTHONPATH set to the repository this file
lives in, so the same tests run against any checkout; `child_env` sets the Telegram token the stand-in answers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "123456:RUN-HARNESS-SECRET-TOKEN"
TOKEN_ENV = "MW_TEST_TG_TOKEN"

T = TypeVar("T")


def config_port(config: Path) -> int:
    """The [api] port a config file names."""
    return int(tomllib.loads(config.read_text())["api"]["port"])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a watcher subprocess: this repository first on the path, the Telegram token set."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), TOKEN_ENV: TOKEN}
    env.pop("MARGIN_WATCHER_CONFIG", None)
    return env | (extra or {})


def wait_for(predicate: Callable[[], T], timeout: float, *, every: float = 0.05, what: str = "condition") -> T:
    """Poll until `predicate()` is truthy and return it; fail the test after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(every)


class WatcherProcess:
    """`watcher run --config F` as a subprocess: JSON log lines from stderr, the API over HTTP, SIGTERM to stop."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = child_env(env)
        self.port = config_port(config)
        self.lines: list[dict[str, Any]] = []  #: parsed JSON log lines, in order
        self.other: list[str] = []  #: stderr lines that are not JSON (warnings, tracebacks)
        self.stdout: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, *, ready: float = 60.0) -> WatcherProcess:
        """Start the process and wait until GET /health answers (fails the test if it exits or never answers)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watcher.cli", "run", "--config", str(self.config)],
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream, sink in ((self.proc.stderr, self._on_stderr), (self.proc.stdout, self.stdout.append)):
            t = threading.Thread(target=self._pump, args=(stream, sink), daemon=True)
            t.start()
            self._threads.append(t)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"watcher run exited with {self.proc.returncode}: {self.other[-5:]}")
            with self._lock:
                unbound = [e for e in self.lines if e.get("msg") == "api not started"]
            if unbound:
                raise AssertionError(f"watcher run could not open its API on port {self.port}: {unbound[0]}")
            return self.status("/health")[0] == 200

        try:
            wait_for(up, ready, every=0.1, what="GET /health to answer")
        except AssertionError as exc:
            self.kill()  # the caller's `with` is never entered: no daemon is left running on its database
            with self._lock:
                tail = [e.get("msg") for e in self.lines[-8:]], self.other[-5:]
            raise AssertionError(f"{exc}; its last log lines and other stderr: {tail}") from None
        return self

    @staticmethod
    def _pump(stream: Any, sink: Callable[[str], None]) -> None:
        for line in stream:
            sink(line.rstrip("\n"))

    def _on_stderr(self, line: str) -> None:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        with self._lock:
            if isinstance(entry, dict) and "msg" in entry:
                entry["_at"] = time.monotonic()  # when the test saw it, to compare with the stand-in's times
                self.lines.append(entry)
            else:
                self.other.append(line)

    @property
    def url(self) -> str:
        """The API's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def status(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        """(HTTP status, parsed JSON body or None) of GET path; (0, None) when nothing answers."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body)
            except ValueError:
                return exc.code, None
        except (OSError, ValueError):
            return 0, None

    def get(self, path: str, timeout: float = 5.0) -> Any:
        """GET path as JSON; fails the test unless it answers 200."""
        code, doc = self.status(path, timeout)
        assert code == 200, (path, code, doc)
        return doc

    def logs(self, msg: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """Log lines so far whose "msg" is `msg` (any if None) and whose fields equal `fields`."""
        with self._lock:
            lines = list(self.lines)
        return [
            e for e in lines if (msg is None or e.get("msg") == msg) and all(e.get(k) == v for k, v in fields.items())
        ]

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._join()

    def stop(self, deadline: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited after `deadline` seconds; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(deadline)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._join()
        return self.proc.returncode

    def _join(self) -> None:
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> WatcherProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CheckRun(NamedTuple):
    """The outcome of one `watcher check --json`: exit code (None if it had to be killed), JSON, wall time."""

    code: int | None
    doc: Any
    seconds: float
    stderr: str


def check_json(config: Path, timeout: float = 60.0, env: dict[str, str] | None = None) -> CheckRun:
    """Run `watcher check --config F --json`; a run longer than `timeout` is killed and reported with code None."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcher.cli", "check", "--config", str(config), "--json"],
        cwd=REPO_ROOT,
        env=child_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        code = None
    seconds = time.monotonic() - start
    try:
        doc = json.loads(out) if out.strip() else None
    except ValueError:
        doc = None
    return CheckRun(code, doc, seconds, err)
