"""The dashboard in a real headless Chromium, served by a real `watcher run` (Aave v3.0 on anvil) on 127.0.0.1.

Chromium loads the pages as a user's browser would, with no script (the pages have none); `--dump-dom` gives the DOM
it built, and `--screenshot` a PNG kept in pytest's tmp dir as the test's artifact (its path is printed).
`./dev test` installs Debian's `chromium` when it is missing and it runs as root with apt-get; elsewhere without it
this test is skipped, saying why. MARGIN_WATCHER_CHROMIUM names another binary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest

from tests import run_harness
from tests.dom import Node, parse
from tests.processes import wait_for
from tests.run_harness import RunSetup, set_price

run_market = run_harness.run_market
telegram_standin = run_harness.telegram_standin
run_setup = run_harness.run_setup

#: Without the background-networking flags Chromium asks hosts elsewhere (updates, sync, safe browsing) at start.
FLAGS = [
    "--headless",
    "--no-sandbox",  # as root in a container there is no user namespace to sandbox in
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]
PRICES = (1_900, 1_800, 1_700, 1_600, 1_450)  #: WETH steps after $2,000: the borrower falls through every level


def chromium() -> str:
    """The Chromium binary, or a skip that says why there is none."""
    named = os.environ.get("MARGIN_WATCHER_CHROMIUM")
    if named:  # ./dev test names the one it found or installed: its absence is a failure, not a skip
        assert Path(named).exists(), f"MARGIN_WATCHER_CHROMIUM={named} does not exist"
        return named
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("no chromium binary (Debian: apt-get install chromium; ./dev test does it when run as root)")
    return found


def browse(url: str, *extra: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on `url` with a fresh profile; fails the test if it does not finish in time."""
    with tempfile.TemporaryDirectory(prefix="mw-chromium-") as profile:
        try:
            done = subprocess.run(
                [chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, url],
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"chromium did not finish within {timeout:g} s on {url}")
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def dump_dom(url: str) -> Node:
    """The DOM Chromium built from the page at `url`."""
    return parse(browse(url, "--dump-dom").stdout)


def test_the_dashboard_in_headless_chromium(run_setup: RunSetup, tmp_path: Path) -> None:
    chromium()  # skip (or fail, when ./dev named one) before starting anything
    s = run_setup
    market = s.market
    safe = market.open_position(None, {"WETH": 10 * 10**18}, {"USDC": 2_000 * 10**6})
    s.accounts = [s.borrower, safe]
    config = s.write_config({"storage": {"history_change_bps": 1}})
    proc = s.start(config)
    risky_id, safe_id = (f"aave_local:local:{a}" for a in (s.borrower, safe))
    history_path = f"/positions/{risky_id}/history"

    def readings() -> int:
        code, doc = proc.status(history_path)
        return len(doc["history"]) if code == 200 else 0  # 404 until the first check is stored

    wait_for(lambda: readings() >= 1, 30, what="the first reading")
    for n, price in enumerate(PRICES, start=2):
        set_price(market, "WETH", price)
        wait_for(lambda n=n: readings() >= n, 30, what=f"reading {n} at WETH ${price}")
    history = proc.get(history_path)["history"]
    docs = {d["id"]: d for d in proc.get("/positions")["positions"]}
    assert docs[risky_id]["level"] == "liquidatable" and docs[safe_id]["level"] == "ok"

    index = dump_dom(f"{proc.url}/")
    listed = {r.attrs["data-id"]: r.attrs["data-level"] for r in index.find_all("tr", class_="position")}
    assert listed == {risky_id: "liquidatable", safe_id: "ok"}
    assert index.find("section", data_level="liquidatable").find("a").attrs["href"] == f"/ui/positions/{risky_id}"
    assert index.find_all("script") == [] and index.find_all(id="degraded") == []

    page_url = f"{proc.url}/ui/positions/{quote(risky_id, safe=':')}"
    one = dump_dom(page_url)
    points = one.find("svg", aria_label="health").find_all("circle", data_series="health")
    assert len(points) == len(history) == 1 + len(PRICES)
    assert [int(p.attrs["data-raw"]) for p in points] == [h["health_raw"] for h in history]
    ys = [float(p.attrs["cy"]) for p in points]
    assert ys == sorted(ys), "each step lowered the health: every point lies below the one before"
    assert {r.attrs["data-threshold"] for r in one.find_all("line", class_="rule")} == {
        "warn",
        "critical",
        "liquidation",
    }
    assert one.find("table", id="alerts").find_all("tr", class_="alert"), "the fall raised alerts"

    shot = tmp_path / "dashboard.png"
    browse(page_url, f"--screenshot={shot}", "--window-size=1100,1500")
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    print(f"dashboard screenshot: {shot} ({len(data)} bytes)")
