"""The probability listener's cache across checks: a check estimates only positions whose inputs changed, and what a
new round changes is estimated again by the background task, so the next check finds every estimate kept."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from tests.test_probability import leg, position
from watcher.config.models import ProbabilityConfig
from watcher.engine import probabilities as listener_module
from watcher.engine.probabilities import Probabilities
from watcher.engine.publish import Check, Staged
from watcher.model import WAD, Position

N = 450  #: more than two chunks of the background re-estimate


def _positions(health: float = 1.3) -> list[Position]:
    base = position(health, [leg("0xc0", "WETH", 10 * WAD)], [leg("0xd0", "USDC", 7 * WAD)])
    return [replace(base, account=f"0x{i:040x}") for i in range(N)]


def _check(positions: list[Position]) -> Check:
    return Check("local", SimpleNamespace(positions=positions), 1_700_000_000.0, 15 * WAD // 10)  # type: ignore[arg-type]


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> tuple[Probabilities, list[int]]:
    """A listener whose Outlook records how many positions each estimate was asked for."""
    probs = Probabilities(SimpleNamespace(probability=ProbabilityConfig()), {})  # type: ignore[arg-type]
    asked: list[int] = []
    real = probs.outlook.cached

    def counting(positions: Any, *args: Any) -> Any:
        asked.append(len(positions))
        return real(positions, *args)

    monkeypatch.setattr(probs.outlook, "cached", counting)
    return probs, asked


def test_a_new_round_is_estimated_off_the_check_and_the_next_check_keeps_everything(
    engine: tuple[Probabilities, list[int]],
) -> None:
    probs, asked = engine
    positions = _positions()
    probs.stage(_check(positions), Staged(0.0))
    assert asked == [N]
    first = probs.get(positions[0].key)
    probs.stage(_check(positions), Staged(0.0))
    assert asked == [N]  # same inputs: nothing estimated on the check's path

    probs.outlook._version += 1  # what a refresh that read a new round does
    asyncio.run(probs._reestimate(positions))
    chunk = listener_module._CHUNK
    assert asked[1:] == [chunk, chunk, N - 2 * chunk]
    probs.stage(_check(positions), Staged(0.0))
    assert len(asked) == 4  # the next check found them all kept
    assert probs.get(positions[0].key) is not first

    moved = [replace(p, health=14 * WAD // 10) if i < 3 else p for i, p in enumerate(positions)]
    probs.stage(_check(moved), Staged(0.0))
    assert asked[-1] == 3  # only the positions whose health moved a basis point


def test_a_check_staged_during_the_re_estimate_is_not_overwritten_by_older_positions(
    engine: tuple[Probabilities, list[int]],
) -> None:
    probs, asked = engine
    positions = _positions()
    probs.stage(_check(positions), Staged(0.0))
    probs.outlook._version += 1
    newer = [replace(p, health=12 * WAD // 10) for p in positions]

    async def interleaved() -> None:
        task = asyncio.create_task(probs._reestimate(positions))
        await asyncio.sleep(0)  # the first chunk is done; a check comes in before the second
        probs.stage(_check(newer), Staged(0.0))
        await task

    asyncio.run(interleaved())
    chunk = listener_module._CHUNK
    assert asked == [N, chunk, N]  # the check estimated its own positions; the task skipped the rest
    for p in newer:
        kept = probs._kept[p.key]
        assert kept.inputs[1] == p.health // listener_module._BP, p.key  # the newer check's health
    probs.stage(_check(newer), Staged(0.0))
    assert len(asked) == 3


def test_a_check_staged_while_the_refresh_waited_keeps_its_newer_estimates(
    engine: tuple[Probabilities, list[int]],
) -> None:
    """The task re-estimates the positions a commit handed it; a later check that saw them in another state wins."""
    probs, asked = engine
    positions = _positions()
    probs.stage(_check(positions), Staged(0.0))
    newer = [replace(p, health=101 * WAD // 100) for p in positions]
    probs.stage(_check(newer), Staged(0.0))  # the next check, while the refresh waited on the node
    probs.outlook._version += 1
    asyncio.run(probs._reestimate(positions))
    assert asked == [N, N]  # nothing of the older state estimated again
    assert {probs._kept[p.key].inputs[1] for p in positions} == {101 * WAD // 100 // listener_module._BP}


def test_a_perp_account_on_two_coins_is_estimated_again_when_its_marks_move_and_its_health_holds(
    engine: tuple[Probabilities, list[int]],
) -> None:
    """A cross account long ETH and short BTC can keep its health while both marks move: the boundary's nearest point
    moved, so the estimate is made again; the same marks keep it."""
    from fractions import Fraction

    from tests.test_perp_probability import BTC, ETH, account, cross

    probs, asked = engine
    before = account(cross(10, 3_000, 2_400, ETH, "ETH"), cross(-1, 60_000, 75_000, BTC, "BTC"))
    probs.stage(_check([before]), Staged(0.0))
    probs.stage(_check([before]), Staged(0.0))
    assert asked == [1]
    # both coins up 5 %: the short's loss and the long's gain offset, health (2.0 in `account`) as it was
    legs = tuple(replace(leg, mark_price=leg.mark_price * Fraction(105, 100)) for leg in before.perps)
    after = replace(before, perps=legs)
    assert after.health == before.health
    probs.stage(_check([after]), Staged(0.0))
    assert asked == [1, 1]
