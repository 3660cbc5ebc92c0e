"""What the relay keeps per channel (delivery health, rests, unwritten marks) and per send (a row and what it folds)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from watcher.store import outbox
from watcher.store.outbox import OutboxRow


@dataclass
class _ChannelState:
    """A channel's delivery health, in memory (rebuilt from the outbox after a restart)."""

    failures: int = 0  #: consecutive failed attempts; the first success resets it
    rest_until: float = float("-inf")  #: no attempt on this channel before this time (relay clock)
    #: when the last failure streak ended (its first success), or the last failure if none has yet: a row created
    #: before this waited through an outage, and may be folded
    outage_end: float = float("-inf")
    loaded: bool = field(default=False, repr=False)
    #: deliveries the channel accepted whose marks could not be written (database locked, full): written before the
    #: channel sends anything else, so a write failure never turns into the same message sent again and again
    unrecorded: list[tuple[int, tuple[int, ...], float]] = field(default_factory=list)


@dataclass(frozen=True)
class _Plan:
    """The next send of a channel: `row`, and the older rows of its position it folds."""

    row: OutboxRow
    folded: tuple[OutboxRow, ...]


def fold_note(folded: tuple[OutboxRow, ...]) -> str:
    """The line telling the user how many updates of a position were folded, and the worst of them."""
    worst = max(folded, key=lambda r: (r.severity, r.created_at))
    if worst.position.startswith("chain:") and worst.severity == outbox.SEVERITY["degraded"]:
        name = "DEGRADED"
    else:
        name = outbox.RANK_NAMES.get(worst.severity, "OK")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(worst.created_at))
    count = len(folded)
    updates = "update" if count == 1 else "updates"
    verb = "was" if count == 1 else "were"
    return (
        f"({count} earlier {updates} for this position {verb} folded while delivery was failing; "
        f"the worst: {name} at {when})"
    )
