"""What the store reads and writes besides rows: an alert raised, a history reading, alert state as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from watcher.alerts import AlertState
from watcher.model import Level


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert raised: what it was about and the message sent for it."""

    id: str  #: the alert id, carried in every message so a duplicate delivery is recognisable
    position: str  #: position key, or "chain:<name>" for watcher health
    kind: str  #: fire, escalate, repeat, recover, falling_fast, degraded, recovered
    level: str
    health: int | None
    created_at: float
    subject: str
    text: str


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """A position's reading at one block."""

    position: str
    at: float
    block: int
    block_hash: str
    health: int | None
    level: str
    collateral: int
    debt: int


def _state_to_json(state: AlertState) -> str:
    d = asdict(state)
    d["level"], d["pending"] = int(state.level), int(state.pending)
    d["samples"] = [[t, str(h)] for t, h in state.samples]
    return json.dumps(d)


def _state_from_json(text: str) -> AlertState:
    d = json.loads(text)
    d["level"], d["pending"] = Level(d["level"]), Level(d["pending"])
    d["samples"] = tuple((t, int(h)) for t, h in d["samples"])
    return AlertState(**d)
