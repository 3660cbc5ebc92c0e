"""The price ladder (watcher/ladder.py) on a hand-made simulator whose healths are known exactly."""

from __future__ import annotations

from dataclasses import replace

from tests.test_whatif import WETH, Lending, lending, perp_without_simulator
from watcher.ladder import Ladders, ladder_json, main_collateral, price_ladder
from watcher.model import WAD, Leg


def test_rungs_down_to_the_first_liquidatable_one() -> None:
    ladder = price_ladder(lending(Lending(coll=10, debt=20_000, p_coll=3000)))  # health 1.2
    assert ladder is not None and ladder["asset"] == WETH and ladder["step_pct"] == 5
    rungs = [(r["move_pct"], r["price_raw"], r["health_raw"], r["liquidatable"]) for r in ladder["rungs"]]
    assert rungs == [
        (-5, 2850, 114 * WAD // 100, False),
        (-10, 2700, 108 * WAD // 100, False),
        (-15, 2550, 102 * WAD // 100, False),
        (-20, 2400, 96 * WAD // 100, True),
    ]


def test_a_deep_position_stops_at_95_percent() -> None:
    ladder = price_ladder(lending(Lending(coll=10, debt=100, p_coll=3000)))  # health 240
    assert ladder is not None and len(ladder["rungs"]) == 19 and ladder["rungs"][-1]["move_pct"] == -95
    assert not any(r["liquidatable"] for r in ladder["rungs"])


def test_no_ladder_without_debt_simulator_or_priced_collateral() -> None:
    assert price_ladder(perp_without_simulator()) is None
    assert price_ladder(lending(Lending(coll=10, debt=0, p_coll=3000))) is None  # nothing borrowed
    assert price_ladder(lending(Lending(coll=10, debt=40_000, p_coll=3000))) is None  # already liquidatable
    p = lending(Lending(coll=10, debt=20_000, p_coll=3000))
    fixed = replace(p, collateral=(Leg("0x" + "44" * 20, "LUSD", 0, 5, 1, 5, 8000),))  # priced by rule: skipped
    assert main_collateral(fixed) is None and price_ladder(fixed) is None


def test_a_failing_simulator_costs_the_ladder_only() -> None:
    class Broken(Lending):
        def health(self) -> int | None:
            raise ZeroDivisionError("a zero price somewhere")

    p = lending(Lending(coll=10, debt=20_000, p_coll=3000))
    assert ladder_json(replace(p, simulator=Broken(10, 20_000, 3000))) is None


def test_ladders_are_kept_until_refreshed() -> None:
    ladders = Ladders()
    p = lending(Lending(coll=10, debt=20_000, p_coll=3000))
    first = ladders.for_document(p, refresh=False)
    lower = lending(Lending(coll=10, debt=20_000, p_coll=2900))  # the same position, its price lower
    assert ladders.for_document(lower, refresh=False) is first  # reused between advice refreshes
    fresh = ladders.for_document(lower, refresh=True)
    assert fresh is not None and first is not None and fresh["rungs"][0]["health_raw"] < first["rungs"][0]["health_raw"]
