"""Benchmark: peak memory of `watcher check --json` while a node sends a 50 MB JSON-RPC answer, against idle.

A tiny JSON-RPC server on 127.0.0.1 answers eth_chainId and eth_getBlockByNumber normally, and eth_call with a
50 MB body sent in 1 MB chunks (with and without a Content-Length header), or with a small answer for the idle run.
Peak RSS is the child's VmHWM (polled from /proc) and its ru_maxrss (from wait4), whichever is larger.

Run: python bench/bench_rss.py [--mb 50] [--chunk-delay 0.02]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CHAIN_ID = 31337
MB = 1 << 20

CONFIG = """
[chains.local]
chain_id = {chain_id}
rpc_urls = ["{url}"]
multicall = "0xcA11bde05977b3631167028862bE2a173976CA11"
timeout = 30
max_block_age = 86400

[[deployments]]
protocol = "aave_v3"
name = "bench_aave"
chains = ["local"]
pool_addresses_provider = "0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e"

[[accounts]]
address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
label = "bench"
"""


class Node:
    """JSON-RPC on 127.0.0.1: eth_call answers `big_mb` MB (0: a small answer), in 1 MB chunks."""

    def __init__(self, big_mb: int, chunk_delay: float, with_length: bool) -> None:
        self.big_mb = big_mb
        self.chunk_delay = chunk_delay
        self.with_length = with_length
        self.big_requests = 0
        self.bytes_sent = 0
        node = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                calls = req if isinstance(req, list) else [req]
                if node.big_mb and any(c.get("method") == "eth_call" for c in calls):
                    node.big_requests += 1
                    self._big(calls[0].get("id"))
                    return
                answers = [node.answer(c) for c in calls]
                body = json.dumps(answers if isinstance(req, list) else answers[0]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _big(self, rid: Any) -> None:
                head = json.dumps({"jsonrpc": "2.0", "id": rid})[:-1].encode() + b', "result": "0x'
                tail = b'"}'
                hex_len = node.big_mb * MB - len(head) - len(tail)
                hex_len -= hex_len % 2  # whole bytes: a well-formed answer, only too large
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if node.with_length:
                    self.send_header("Content-Length", str(len(head) + hex_len + len(tail)))
                else:
                    self.send_header("Connection", "close")  # the body ends when the connection does
                    self.close_connection = True
                self.end_headers()
                try:
                    self.wfile.write(head)
                    chunk = b"0" * MB
                    left = hex_len
                    while left > 0:
                        piece = chunk[: min(MB, left)]
                        self.wfile.write(piece)
                        node.bytes_sent += len(piece)
                        left -= len(piece)
                        time.sleep(node.chunk_delay)
                    self.wfile.write(tail)
                except OSError:
                    pass  # the client gave up on the answer: that is what a cap does

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """The node's URL."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def answer(call: dict[str, Any]) -> dict[str, Any]:
        """A normal answer to one call."""
        method = call.get("method")
        if method == "eth_chainId":
            result: Any = hex(CHAIN_ID)
        elif method == "eth_blockNumber":
            result = "0x10"
        elif method == "eth_getBlockByNumber":
            result = {"number": "0x10", "hash": "0x" + "ab" * 32, "timestamp": hex(int(time.time()))}
        else:
            result = "0x"
        return {"jsonrpc": "2.0", "id": call.get("id"), "result": result}

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Run:
    """One `watcher check --json` run: exit code, peak RSS (KiB), wall time (s)."""

    code: int | None
    peak_kib: int
    seconds: float
    stderr: str
    reason: str  #: why the position was unknown, from the JSON output


def _hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_check(config: Path, timeout: float) -> Run:
    """Run `watcher check --config F --json` and measure its peak RSS until it exits."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "watcher.cli", "check", "--config", str(config), "--json"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        peak, code = 0, None
        while True:
            peak = max(peak, _hwm_kib(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                peak = max(peak, usage.ru_maxrss)
                code = os.waitstatus_to_exitcode(status)
                proc.returncode = code
                break
            if time.monotonic() - start > timeout:
                proc.kill()
                _, _, usage = os.wait4(proc.pid, 0)
                proc.returncode = -9
                peak = max(peak, usage.ru_maxrss)
                break
            time.sleep(0.01)
        seconds = time.monotonic() - start
        err.seek(0)
        text = err.read().decode(errors="replace").strip()
        out.seek(0)
        try:
            unknown = json.loads(out.read()).get("unknown") or [{}]
            reason = str(unknown[0].get("reason", ""))
        except (ValueError, AttributeError):
            reason = ""
    return Run(code, peak, seconds, text.splitlines()[-1] if text else "", reason)


def measure(big_mb: int, chunk_delay: float, with_length: bool, timeout: float, tmp: Path) -> tuple[Run, Node]:
    """One run against a fresh node."""
    node = Node(big_mb, chunk_delay, with_length)
    try:
        config = tmp / "config.toml"
        config.write_text(CONFIG.format(chain_id=CHAIN_ID, url=node.url))
        return run_check(config, timeout), node
    finally:
        node.stop()


def main() -> None:
    """Idle run, then the big answer with and without Content-Length; print RSS, ratio, wall time, exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=50, help="size of the eth_call answer in MB")
    ap.add_argument("--chunk-delay", type=float, default=0.02, help="seconds between 1 MB chunks")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds before a run is killed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        idle, _ = measure(0, 0.0, True, args.timeout, tmp)
        print(f"idle (small answer):          peak RSS {idle.peak_kib / 1024:7.1f} MiB, "
              f"{idle.seconds:5.2f} s, exit {idle.code}")  # fmt: skip
        for with_length in (True, False):
            big, node = measure(args.mb, args.chunk_delay, with_length, args.timeout, tmp)
            how = "with Content-Length" if with_length else "no Content-Length "
            ratio = big.peak_kib / idle.peak_kib if idle.peak_kib else float("nan")
            print(
                f"{args.mb} MB answer, {how}: peak RSS {big.peak_kib / 1024:7.1f} MiB ({ratio:.2f}x idle), "
                f"{big.seconds:5.2f} s, exit {big.code}, {node.big_requests} big request(s), "
                f"{node.bytes_sent / MB:.0f} MB sent; unknown: {big.reason[:120]!r} {big.stderr[:160]}"
            )


if __name__ == "__main__":
    main()
