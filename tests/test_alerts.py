"""The alert state machine: confirmation, hysteresis, repeats, escalation, one recovery, falling fast."""

from __future__ import annotations

from urllib.parse import quote

from watcher.alerts import AlertState, Event, Observation, Rules, evaluate
from watcher.model import WAD, Level

RULES = Rules(warn=125 * WAD // 100, critical=110 * WAD // 100)


def h(x: str) -> int:
    whole, _, frac = x.partition(".")
    return int(whole) * WAD + int((frac + "0" * 18)[:18])


def run(healths: list[str | None], dt: float = 60.0, rules: Rules = RULES, liquidatable_below_one: bool = True):
    state, events, t = AlertState(), [], 1_000_000.0
    for x in healths:
        hv = None if x is None else h(x)
        obs = Observation(t, hv, liquidatable_below_one and hv is not None and hv < WAD)
        state, evs = evaluate("aave_v3:eth:0xA", state, obs, rules)
        events.extend(evs)
        t += dt
    return state, events


def kinds(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.kind, e.level.name) for e in events if e.kind != "falling_fast"]


def test_warn_needs_two_checks_critical_and_liquidatable_fire_at_once() -> None:
    _, ev = run(["1.3", "1.24"])
    assert kinds(ev) == []  # one check at warn is not enough
    _, ev = run(["1.3", "1.24", "1.24"])
    assert kinds(ev) == [("fire", "WARN")]
    _, ev = run(["1.3", "1.05"])
    assert kinds(ev) == [("fire", "CRITICAL")]
    _, ev = run(["1.3", "1.24", "1.24", "1.05", "0.99"])
    assert kinds(ev) == [("fire", "WARN"), ("escalate", "CRITICAL"), ("escalate", "LIQUIDATABLE")]


def test_oscillating_around_a_threshold_is_one_alert_not_a_storm() -> None:
    wobble = ["1.2499", "1.2501"] * 30  # 60 checks straddling warn, inside the 0.02 clear margin
    state, ev = run(["1.3", *wobble])
    assert kinds(ev) == [("fire", "WARN")]
    assert state.level is Level.WARN


def test_recovery_needs_the_margin_and_is_sent_once() -> None:
    _, ev = run(["1.05", "1.26", "1.27", "1.28", "1.5", "1.6"])
    assert kinds(ev) == [("fire", "CRITICAL"), ("recover", "OK")]
    recover = next(e for e in ev if e.kind == "recover")
    assert recover.health == h("1.28")  # 1.25 + 0.02 margin is passed at 1.28, not before


def test_repeats_at_the_interval_while_firing() -> None:
    # critical repeats every 30 min; checks every 60 s for 95 minutes
    _, ev = run(["1.05"] * 96, dt=60.0)
    assert kinds(ev) == [("fire", "CRITICAL")] + [("repeat", "CRITICAL")] * 3
    ids = [e.alert_id for e in ev]
    assert len(set(ids)) == len(ids)  # each message is recognisable


def test_escalation_is_immediate_even_inside_a_repeat_interval() -> None:
    _, ev = run(["1.2", "1.2", "1.05"], dt=1.0)
    assert kinds(ev) == [("fire", "WARN"), ("escalate", "CRITICAL")]


def test_improving_from_critical_to_warn_is_quiet_then_repeats_at_warn_pace() -> None:
    state, ev = run(["1.05", "1.2"])
    assert kinds(ev) == [("fire", "CRITICAL")] and state.level is Level.WARN


def test_falling_fast() -> None:
    _, ev = run(["2.0", "1.95", "1.85"], dt=60.0)  # -0.15 within 2 minutes, still healthy
    falls = [e for e in ev if e.kind == "falling_fast"]
    assert len(falls) == 1 and falls[0].level is Level.OK
    _, ev = run(["2.0", "1.95", "1.9", "1.85", "1.8", "1.75"], dt=400.0)  # slower than 0.1 per 10 min
    assert [e for e in ev if e.kind == "falling_fast"] == []


def test_no_debt_is_ok() -> None:
    state, ev = run([None, None])
    assert ev == [] and state.level is Level.OK


def test_alert_ids_are_url_safe_and_name_key_episode_and_level() -> None:
    # critical, two repeats (30 min), recovery, then a second episode
    _, ev = run(["1.05"] * 62 + ["1.5", "1.05"], dt=60.0)
    ids = [e.alert_id for e in ev if e.kind != "falling_fast"]
    key = "aave_v3:eth:0xA"
    assert ids == [
        f"{key}:e1:critical",
        f"{key}:e1:critical:r1",
        f"{key}:e1:critical:r2",
        f"{key}:e1:recovered",
        f"{key}:e2:critical",
    ]
    for alert_id in ids + [e.alert_id for e in ev]:
        # Nothing a URL path would change: pasted from a message's ref: line, it is the path segment as is.
        assert "#" not in alert_id and quote(alert_id, safe=":@") == alert_id
