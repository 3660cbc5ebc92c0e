"""The alerting listener: each position's alert state, the transitions a check makes, and their messages."""

from __future__ import annotations

from collections.abc import Mapping

from watcher.alerts import AlertState, Event, Observation, classify, evaluate
from watcher.engine.probabilities import Probabilities
from watcher.engine.publish import Check, Staged
from watcher.engine.rules import RuleBook
from watcher.forecast_doc import ttl_of
from watcher.messages import position_message
from watcher.model import Level, Position
from watcher.next_oracle import alert_health
from watcher.store import AlertRecord, Store


class Alerting:
    """Evaluates the alert rules on every position read; silenced positions' alerts are stored but not sent."""

    def __init__(
        self,
        store: Store,
        rules: RuleBook,
        last_history: Mapping[str, tuple[float, int | None, str]],
        probabilities: Probabilities | None = None,
    ):
        self.store = store
        self.rules = rules
        self.probabilities = probabilities  #: staged before this listener: the 24 h figure of the same check
        #: the health last written to history, per position: a message says where the health came from
        self.last_history = last_history
        self.states: dict[str, AlertState] = store.alert_states()

    def stage(self, check: Check, staged: Staged) -> None:
        """Stage every state change and the alerts it raises."""
        silenced_accounts, silenced_positions = self.store.silenced(check.now)
        for p in check.result.positions:
            state = self.states.get(p.key, AlertState())
            rules = self.rules.rules_for(p)
            ttl = None
            if rules.warn_ttl is not None:
                # an ok-by-health position may reuse a young forecast (see forecast_doc); worse ones are solved anew
                ttl = ttl_of(p, classify(p.health, p.liquidatable, rules.warn, rules.critical) is Level.OK)
            day = self.probabilities.within_day(p.key) if self.probabilities is not None else None
            obs = Observation(
                check.now,
                alert_health(p, rules.maker_next_price),
                p.liquidatable,
                ttl,
                day.probability if day is not None else None,
            )
            new, events = evaluate(p.key, state, obs, rules)
            if new != state:
                staged.states[p.key] = new
            if not events:
                continue
            check.events[p.key] = events
            for ev in events:
                staged.alerts.append(self._record(check, p, ev))
                if p.key in silenced_positions or p.account in silenced_accounts:
                    staged.muted.add(ev.alert_id)

    def _record(self, check: Check, p: Position, ev: Event) -> AlertRecord:
        previous = self.last_history.get(p.key)
        rules = self.rules.rules_for(p)
        subject, text = position_message(
            p,
            ev,
            check.advice(p),
            previous[1] if previous else None,
            self.rules.cfg.thresholds.target,
            ttl_under=rules.warn_ttl,
            levels=(rules.warn, rules.critical),
            chance=self.probabilities.within_day(p.key) if self.probabilities is not None else None,
        )
        return AlertRecord(ev.alert_id, p.key, ev.kind, ev.level.name.lower(), p.health, ev.at, subject, text)

    def applied(self, staged: Staged) -> None:
        """Memory follows the committed states."""
        self.states.update(staged.states)
