"""Runs Foundry's anvil on loopback for tests and benchmarks, plus snapshot and time helpers."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from web3 import Web3

from watcher.devchain.node import DevchainError, anvil_binary

# A batched eth_call over ~1000 Aave accounts needs far more than anvil's default 30M; eth_call is capped
# at the block gas limit, so the block limit is what lets one big read fit.
DEFAULT_GAS_LIMIT = 1_000_000_000
_START_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 5.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Anvil:
    """An anvil process on 127.0.0.1 and a Web3 connected to it; use as a context manager."""

    def __init__(
        self,
        chain_id: int = 31337,
        *,
        gas_limit: int = DEFAULT_GAS_LIMIT,
        code_size_limit: int | None = None,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        binary: Path | None = None,
    ) -> None:
        """Configure the node; nothing runs until start() or entering the with-block."""
        self.chain_id = chain_id
        self.gas_limit = gas_limit
        self.code_size_limit = code_size_limit
        self.port = port
        self.extra_args = extra_args
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self.url = ""
        self._w3: Web3 | None = None

    @property
    def w3(self) -> Web3:
        """Return the Web3 bound to this node (HTTPProvider on loopback)."""
        if self._w3 is None:
            raise DevchainError("anvil is not running")
        return self._w3

    def start(self) -> Anvil:
        """Start anvil and wait until it answers eth_chainId."""
        binary = self.binary or anvil_binary()
        err = ""
        # Another process can grab a probed port before anvil binds it; retry on a fresh port then.
        for _attempt in range(3):
            port = self.port or _free_port()
            cmd = [
                str(binary),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--chain-id",
                str(self.chain_id),
                "--gas-limit",
                str(self.gas_limit),
                "--silent",
                *self.extra_args,
            ]
            if self.code_size_limit is not None:
                cmd += ["--code-size-limit", str(self.code_size_limit)]
            # stderr goes to a file, not a pipe: nobody reads it while anvil runs, and a full pipe would block it.
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process, closed in stop()
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._stderr)
            self.url = f"http://127.0.0.1:{port}"
            self._w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 120}))
            if self._wait_ready():
                return self
            err = self._stop_process()
            if self.port is not None:
                break
        raise DevchainError(f"anvil did not start: {err.strip()[-2000:]}")

    def _wait_ready(self) -> bool:
        assert self.proc is not None and self._w3 is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if self._w3.eth.chain_id == self.chain_id:
                    return True
            except Exception:
                # Connection refused until the server socket is up.
                time.sleep(0.02)
        return False

    def _stop_process(self) -> str:
        proc, self.proc, self._w3 = self.proc, None, None
        if proc is None:
            return ""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(_STOP_TIMEOUT_S)
        err = ""
        if self._stderr is not None:
            self._stderr.seek(0)
            err = self._stderr.read().decode(errors="replace")
            self._stderr.close()
            self._stderr = None
        return err

    def stop(self) -> None:
        """Stop anvil: terminate, then kill if it lingers."""
        self._stop_process()

    def __enter__(self) -> Anvil:
        """Start the node."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the node."""
        self.stop()


def rpc(w3: Web3, method: str, params: list[Any] | None = None) -> Any:
    """Make a raw JSON-RPC request and return its result, raising DevchainError on an RPC error."""
    resp = w3.provider.make_request(method, params or [])  # type: ignore[arg-type]
    if "error" in resp:
        raise DevchainError(f"{method} failed: {resp['error']}")
    return resp["result"]


def snapshot(w3: Web3) -> Any:
    """Take an anvil (evm_snapshot) snapshot and return its id."""
    return rpc(w3, "evm_snapshot")


def revert(w3: Web3, snapshot_id: Any) -> None:
    """Revert anvil to a snapshot taken with snapshot(); the id is consumed."""
    if not rpc(w3, "evm_revert", [snapshot_id]):
        raise DevchainError(f"evm_revert({snapshot_id}) was refused")


def increase_time(w3: Web3, seconds: int) -> None:
    """Move anvil's clock forward and mine a block so the new time is on chain."""
    rpc(w3, "evm_increaseTime", [int(seconds)])
    rpc(w3, "evm_mine")
