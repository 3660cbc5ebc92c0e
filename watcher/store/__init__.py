"""SQLite state (sqlite-utils): alert state, alerts, history, chain status, positions, silences and the outbox.

Every SQL query of the watcher is in this package: the engine, the API, the relay and the daemon call it.
A check's outcome is committed in one transaction: alert state changes, the alerts they raise, and the outbox
rows that deliver them. A crash therefore loses nothing and re-sends nothing that was already committed as sent.
"""

# outbox first: it imports nothing of watcher.notify at load time, so watcher.notify may import it while loading
from watcher.store import outbox
from watcher.store.core import Store
from watcher.store.opening import open_store
from watcher.store.records import AlertRecord, HistoryRow
from watcher.store.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "AlertRecord", "HistoryRow", "Store", "open_store", "outbox"]
