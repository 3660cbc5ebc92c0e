"""The alert rules a position is judged by: the global ones, with the most specific override applied."""

from __future__ import annotations

from dataclasses import replace

from watcher.alerts import Rules
from watcher.config import Config
from watcher.model import Position


def rules_from(cfg: Config) -> Rules:
    """The global alert rules."""
    a, t = cfg.alerts, cfg.thresholds
    return Rules(
        warn=t.warn,
        critical=t.critical,
        clear_margin=a.clear_margin,
        confirm=(a.confirm_warn, a.confirm_critical, a.confirm_liquidatable),
        repeat=(a.repeat_warn, a.repeat_critical, a.repeat_liquidatable),
        fall_drop=a.falling_drop,
        fall_window=a.falling_window,
        warn_ttl=None if a.warn_days_to_liquidation is None else int(a.warn_days_to_liquidation * 86_400),
        maker_next_price=a.maker_next_price,
        warn_p24=a.warn_probability_24h,
    )


class RuleBook:
    """Rules per position from `[thresholds]`, `[alerts]` and `[[alerts.overrides]]`."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rules = rules_from(cfg)

    def rules_for(self, p: Position) -> Rules:
        """Global rules with the most specific matching override applied (protocol and chain each count one)."""
        best, score = None, -1
        for o in self.cfg.alerts.overrides:
            if o.account != p.account or (o.protocol not in (None, p.protocol)) or (o.chain not in (None, p.chain)):
                continue
            s = (o.protocol is not None) + (o.chain is not None)
            if s > score:
                best, score = o, s
        if best is None:
            return self.rules
        return replace(self.rules, warn=best.warn or self.rules.warn, critical=best.critical or self.rules.critical)
