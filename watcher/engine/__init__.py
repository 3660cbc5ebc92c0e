"""The engine of `watcher run`: a coordinator per source publishes each check; listeners make one transaction of it.

source (sources.py: a chain followed head by head, or a venue on its interval; freshness and the watchdog bound)
  └─ publish(result) (publish.py) ─► listeners stage what they would change, in order:
        alerting.py   alert state, level transitions and their messages, silences
        documents.py  the position documents the API serves, with the advice they carry
        history.py    history rows, written when the health moved or the level changed
        health.py     the source's own health: degraded and recovered alerts
     ─► one commit (store.py) ─► each listener applies what was committed to its memory ─► the relay wakes
"""
