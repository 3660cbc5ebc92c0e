"""`watcher history` as a process, over the SQLite file a real `watcher run` wrote while the WETH price fell."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

from tests import run_harness
from tests.processes import wait_for
from tests.run_harness import RunSetup, set_price
from tests.test_cli_options import watcher

run_market = run_harness.run_market
run_setup = run_harness.run_setup
telegram_standin = run_harness.telegram_standin


def readings(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("select count(*) from history").fetchone()[0])


def test_history_over_a_real_run(run_setup: RunSetup) -> None:
    cfg = run_setup.write_config()
    proc = run_setup.start(cfg)
    wait_for(lambda: readings(run_setup.db_path) >= 1, 30, what="the first history row")
    for usd in (1_900, 1_800, 1_700):  # each step moves health by more than history_change_bps: one row each
        before = readings(run_setup.db_path)
        set_price(run_setup.market, "WETH", usd)
        wait_for(lambda b=before: readings(run_setup.db_path) > b, 30, what=f"a row at ${usd}")
    proc.stop()
    key = f"aave_local:local:{run_setup.borrower}"

    table = watcher("history", "-c", str(cfg))
    assert table.returncode == 0, table.stderr
    out = table.stdout
    assert key in out and "(user0)" in out and "4 readings" in out
    # the sparkline falls with the price: the first bar the highest, the last the lowest
    [line] = [ln for ln in out.splitlines() if "█" in ln or "▁" in ln]
    bars = "".join(ch for ch in line if ch in "▁▂▃▄▅▆▇█")
    assert bars == "█" + bars[1:-1] + "▁" and len(bars) == 4 and list(bars) == sorted(bars, reverse=True)
    assert "1.3750" in out and "1.1687" in out  # first at $2,000 and last (the min) at $1,700
    assert "warn" in out  # 1.1687: below warn (1.25), above critical (1.1)

    got = watcher("history", "-c", str(cfg), "--csv")
    assert got.returncode == 0, got.stderr
    rows = list(csv.DictReader(io.StringIO(got.stdout)))
    assert len(rows) == 4 and {r["position"] for r in rows} == {key}
    assert list(rows[0]) == [
        "position", "time", "unix", "block", "block_hash", "level", "health_raw", "health",
        "total_collateral_raw", "total_debt_raw",
    ]  # fmt: skip
    first, last = rows[0], rows[-1]
    assert first["time"].endswith("Z") and first["time"][10] == "T"
    assert first["health_raw"] == "1375000000000000000" or first["health_raw"].startswith("13749")
    assert (
        int(first["total_collateral_raw"]) == 10 * 2_000 * 10**8
        and int(last["total_collateral_raw"]) == 10 * 1_700 * 10**8
    )
    assert int(first["total_debt_raw"]) >= 12_000 * 10**8 and int(last["health_raw"]) < int(first["health_raw"])
    assert [r["level"] for r in rows] == ["ok", "ok", "warn", "warn"]

    # one position, by a lower-case address as an explorer prints it; --since in the future leaves nothing
    one = watcher("history", key.lower().replace("aave_local:local:", "aave_local:local:"), "-c", str(cfg), "--csv")
    assert one.returncode == 0 and len(list(csv.DictReader(io.StringIO(one.stdout)))) == 4, one.stderr
    later = watcher("history", "-c", str(cfg), "--since", "2999-01-01T00:00:00Z", "--csv")
    assert later.returncode == 0 and later.stdout.strip().count("\n") == 0  # the header only
    recent = watcher("history", "-c", str(cfg), "--since", "1h", "--csv")
    assert len(list(csv.DictReader(io.StringIO(recent.stdout)))) == 4
    old = watcher("history", "-c", str(cfg), "--since", str(int(float(first["unix"])) + 10**6))
    assert old.returncode == 0 and "no readings stored since" in old.stdout

    # colour: on with FORCE_COLOR, none with --no-color
    assert "\x1b[" in watcher("history", "-c", str(cfg), FORCE_COLOR="1").stdout
    assert "\x1b[" not in watcher("history", "-c", str(cfg), "--no-color", FORCE_COLOR="1").stdout

    unknown = watcher("history", "aave_local:local:0x0000000000000000000000000000000000000001", "-c", str(cfg))
    assert unknown.returncode == 2 and unknown.stdout == ""
    line = unknown.stderr.strip()
    assert (
        "\n" not in line
        and "'aave_local:local:0x0000000000000000000000000000000000000001' has no stored history" in line
    )
    assert key in line  # the known ones are listed
    bad = watcher("history", "-c", str(cfg), "--since", "last tuesday")
    assert bad.returncode == 2 and "--since: 'last tuesday' is not a duration" in bad.stderr


def test_history_without_a_database(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f"""
[venues.hl]
protocol = "hyperliquid"

[[accounts]]
address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"

[storage]
path = "{tmp_path / "none.db"}"
"""
    )
    got = watcher("history", "-c", str(cfg))
    assert got.returncode == 2 and "storage.path:" in got.stderr and "no database yet" in got.stderr
    assert not (tmp_path / "none.db").exists()
