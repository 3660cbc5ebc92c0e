"""Alert rules per position: levels with hysteresis and confirmation, repeats, escalation, recovery, falling fast.

Pure: `evaluate(state, observation, rules)` returns the next state and the events to notify; the caller stores
both in one transaction (with the outbox rows), so a restart neither re-sends nor forgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from watcher.model import WAD, Level


@dataclass(frozen=True, slots=True)
class Rules:
    """Thresholds (WAD) and timing for one position; global defaults with per-account/position overrides."""

    warn: int
    critical: int
    clear_margin: int = 2 * WAD // 100  #: a level clears only above its threshold plus this
    confirm: tuple[int, int, int] = (2, 1, 1)  #: consecutive checks before warn, critical, liquidatable fire
    repeat: tuple[float, float, float] = (6 * 3600.0, 1800.0, 300.0)  #: repeat interval while firing, per level
    fall_drop: int = 10 * WAD // 100  #: "falling fast": health dropped by more than this ...
    fall_window: float = 600.0  #: ... within this many seconds
    #: warn when the time to liquidation at constant prices is at most this many seconds (None: no such rule)
    warn_ttl: int | None = None
    #: a Maker vault is judged at the worse of its health now and at the OSM's queued price (False: now only)
    maker_next_price: bool = True
    #: warn when the probability of liquidation within 24 h is at least this (None: no such rule)
    warn_p24: float | None = None

    def threshold(self, level: Level) -> int:
        """Health at or below which `level` applies (liquidatable: below 1, the protocol's verdict)."""
        return {Level.WARN: self.warn, Level.CRITICAL: self.critical, Level.LIQUIDATABLE: WAD}[level]


@dataclass(frozen=True, slots=True)
class Observation:
    """One check's reading of a position."""

    at: float  #: check time (unix seconds)
    health: int | None  #: WAD; None when there is no debt
    liquidatable: bool  #: the protocol's own verdict
    ttl: int | None = None  #: seconds to liquidation at constant prices (watcher/forecast.py); None: none known
    p24: float | None = None  #: probability of liquidation within 24 h (watcher/probability.py); None: none known


@dataclass(frozen=True, slots=True)
class AlertState:
    """What is remembered between checks for one position."""

    level: Level = Level.OK  #: the level the user was last told about (OK: nothing firing)
    since: float = 0.0  #: when that level started firing
    last_notified: float = 0.0
    pending: Level = Level.OK  #: a worse level seen but not yet confirmed
    pending_count: int = 0
    samples: tuple[tuple[float, int], ...] = ()  #: recent (time, health) for "falling fast"
    last_fall_alert: float = 0.0
    episode: int = 0  #: increments each time a new alert episode starts (part of alert ids)


@dataclass(frozen=True, slots=True)
class Event:
    """Something to tell the user."""

    kind: str  #: "fire", "escalate", "repeat", "recover", "falling_fast"
    level: Level
    health: int | None
    at: float
    alert_id: str = field(default="")


def alert_id(key: str, episode: int, *parts: str) -> str:
    """A URL-safe alert id, `{key}:e{episode}:{part}...`: pasted from a message's `ref:` line, it works in a URL."""
    return ":".join((key, f"e{episode}", *parts))


def classify(health: int | None, liquidatable: bool, warn: int, critical: int) -> Level:
    """The level thresholds give a reading; the protocol's own verdict alone decides liquidatable."""
    if liquidatable:
        return Level.LIQUIDATABLE
    if health is None:
        return Level.OK
    if health <= critical:
        return Level.CRITICAL
    if health <= warn:
        return Level.WARN
    return Level.OK


#: a warn raised by the time to liquidation holds until that time is this much (x1/10) longer than the rule's
TTL_CLEAR_TENTHS = 11


#: a warn raised by the 24 h probability holds until the probability falls below this share of the rule's
P24_CLEAR_SHARE = 0.8


def _ttl_warns(obs: Observation, rules: Rules, tenths: int = 10) -> bool:
    """A risk rule (time to liquidation, or the 24 h probability) asks for at least a warn; `tenths` > 10 is the
    looser test a firing warn holds by."""
    if rules.warn_ttl is not None and obs.ttl is not None and obs.ttl * 10 <= rules.warn_ttl * tenths:
        return True
    share = 1.0 if tenths == 10 else P24_CLEAR_SHARE
    return rules.warn_p24 is not None and obs.p24 is not None and obs.p24 >= rules.warn_p24 * share


def raw_level(obs: Observation, rules: Rules) -> Level:
    """The level the thresholds give, without hysteresis (a near time to liquidation is at least a warn)."""
    level = classify(obs.health, obs.liquidatable, rules.warn, rules.critical)
    return max(level, Level.WARN) if _ttl_warns(obs, rules) else level


def held_level(current: Level, obs: Observation, rules: Rules) -> Level:
    """The level after hysteresis: a firing level holds until health is above its threshold plus the margin."""
    level = raw_level(obs, rules)
    if obs.health is None:
        return level
    for candidate in range(current, level, -1):
        sev = Level(candidate)
        if obs.health <= rules.threshold(sev) + rules.clear_margin:
            return sev
        if sev == Level.WARN and _ttl_warns(obs, rules, TTL_CLEAR_TENTHS):
            return sev
    return level


def evaluate(key: str, state: AlertState, obs: Observation, rules: Rules) -> tuple[AlertState, list[Event]]:
    """Next state and events for one position after one check."""
    events: list[Event] = []
    level = held_level(state.level, obs, rules)
    if state.pending > state.level:
        # A pending level holds with the same hysteresis as a firing one: a reading that wobbles back inside
        # the margin still counts as consecutive, so health hovering at a threshold warns once.
        level = max(level, held_level(state.pending, obs, rules))
    new = state
    if level > state.level:
        pending_count = state.pending_count + 1 if state.pending == level else 1
        # A worse level than the pending one also confirms everything below it.
        if state.pending > level:
            pending_count = state.pending_count + 1
        if pending_count >= rules.confirm[level - 1]:
            episode = state.episode + 1 if state.level == Level.OK else state.episode
            kind = "fire" if state.level == Level.OK else "escalate"
            new = replace(
                state,
                level=level,
                since=obs.at,
                last_notified=obs.at,
                pending=Level.OK,
                pending_count=0,
                episode=episode,
            )
            events.append(Event(kind, level, obs.health, obs.at, alert_id(key, episode, level.name.lower())))
        else:
            new = replace(state, pending=level, pending_count=pending_count)
    elif level < state.level:
        if level == Level.OK:
            events.append(Event("recover", Level.OK, obs.health, obs.at, alert_id(key, state.episode, "recovered")))
            new = replace(state, level=level, since=obs.at, last_notified=obs.at, pending=Level.OK, pending_count=0)
        else:
            new = replace(state, level=level, pending=Level.OK, pending_count=0)
    else:
        new = replace(state, pending=Level.OK, pending_count=0)
        if level > Level.OK and obs.at - state.last_notified >= rules.repeat[level - 1]:
            new = replace(new, last_notified=obs.at)
            n = int((obs.at - state.since) // rules.repeat[level - 1])
            events.append(
                Event("repeat", level, obs.health, obs.at, alert_id(key, state.episode, level.name.lower(), f"r{n}"))
            )
    new, fall = _falling_fast(key, new, obs, rules)
    return new, events + fall


def _falling_fast(key: str, state: AlertState, obs: Observation, rules: Rules) -> tuple[AlertState, list[Event]]:
    if obs.health is None:
        return replace(state, samples=()), []
    recent = (*(s for s in state.samples if obs.at - s[0] <= rules.fall_window), (obs.at, obs.health))
    state = replace(state, samples=recent[-64:])
    peak = max(h for _, h in recent)
    if peak - obs.health > rules.fall_drop and obs.at - state.last_fall_alert > rules.fall_window:
        state = replace(state, last_fall_alert=obs.at)
        return state, [
            Event("falling_fast", Level(raw_level(obs, rules)), obs.health, obs.at, f"{key}:fall@{int(obs.at)}")
        ]
    return state, []
