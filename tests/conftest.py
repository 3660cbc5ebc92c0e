"""Shared fixtures: the local chains (eth-tester, anvil), real Aave markets once per session, an SMTP server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from web3 import Web3

from tests.smtp_servers import RecordingHandler, start_smtp
from watcher.devchain.aave import VERSIONS, AaveMarket, aave_artifacts, deploy_aave
from watcher.devchain.anvil import Anvil
from watcher.devchain.deploy import eth_tester_web3, revert_snapshot, take_snapshot

CHAINS = ("eth-tester", "anvil")
# Seconds spent per market, printed after the run: loading/compiling artifacts, then deploying.
DEPLOY_SECONDS: dict[str, tuple[float, float]] = {}


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    """One anvil node on 127.0.0.1 for the whole session."""
    with Anvil() as node:
        yield node


@pytest.fixture(scope="session")
def eth_tester_chain() -> Web3:
    """One in-process eth-tester chain for the whole session."""
    return eth_tester_web3()


def _session_web3(request: pytest.FixtureRequest, chain: str) -> Web3:
    if chain == "anvil":
        return request.getfixturevalue("anvil").w3
    return request.getfixturevalue("eth_tester_chain")


@pytest.fixture(params=CHAINS)
def chain(request: pytest.FixtureRequest) -> Iterator[Web3]:
    """A Web3 on each local chain, rolled back to its state before the test afterwards."""
    w3 = _session_web3(request, request.param)
    snap = take_snapshot(w3)
    yield w3
    revert_snapshot(w3, snap)


@pytest.fixture(scope="session")
def _markets() -> dict[tuple[str, str], AaveMarket]:
    return {}


@pytest.fixture(
    scope="session",
    params=[(c, v) for c in CHAINS for v in VERSIONS],
    ids=[f"{c}-aave{v}" for c in CHAINS for v in VERSIONS],
)
def deployed_market(request: pytest.FixtureRequest, _markets: dict[tuple[str, str], AaveMarket]) -> AaveMarket:
    """A real Aave market per (chain, version), deployed once per session."""
    chain_name, version = request.param
    # pytest may set a session fixture up again for a parameter it already finalized; the cache keeps
    # that from redeploying.
    if request.param not in _markets:
        w3 = _session_web3(request, chain_name)
        start = time.perf_counter()
        aave_artifacts(version)
        loaded = time.perf_counter()
        _markets[request.param] = deploy_aave(w3, version)
        DEPLOY_SECONDS[f"{chain_name}-aave{version}"] = (loaded - start, time.perf_counter() - loaded)
    return _markets[request.param]


@pytest.fixture
def aave_market(deployed_market: AaveMarket) -> Iterator[AaveMarket]:
    """The session's market for this (chain, version), with the chain rolled back after each test."""
    w3 = deployed_market.w3
    snap = take_snapshot(w3)
    yield deployed_market
    revert_snapshot(w3, snap)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how long each Aave market took: artifacts (a v3.6 compile when not cached) and deployment."""
    if DEPLOY_SECONDS:
        parts = ", ".join(f"{k} {a:.2f}s+{d:.2f}s" for k, (a, d) in sorted(DEPLOY_SECONDS.items()))
        terminalreporter.write_line(f"aave markets (artifacts+deploy): {parts}")


@pytest.fixture
def smtp() -> Iterator[RecordingHandler]:
    """A real SMTP server on 127.0.0.1 recording what it receives (its port is `handler.port`); test_notify.py
    has its own, for servers that refuse."""
    handler = RecordingHandler()
    controller = start_smtp(handler)
    handler.port = controller.port  # type: ignore[attr-defined]
    yield handler
    controller.stop()
