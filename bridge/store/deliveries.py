"""The state store: each event, each (event, target) delivery, order links and echoes.

`Store` is the one object the bridge holds; it is composed of the store's parts, each a module
of this folder:

- `engine`: opening SQLite or PostgreSQL, migrating, connections; `StoreUnavailable`.
- `arrivals`: the receiver's writes (events and their `pending` pairs, echoes recognised).
- `claims`: the worker's claims and outcomes, exactly one effect per (event, target).
- `reopens`: reconciliation's reads and moves of delivered pairs.
- `history`: a pair's row and history steps; the operator's steps.
- `links`, `echoes`: order links and echo records.
- `spool`: events the broker could not take, held until the forwarder publishes them.
- `watermarks`: where each scheduled poll (the backstop's) got to.
- `effects`: which event holds each target order (one effect per target order).
- `sessions`: console sessions signed out, for every receiver process.
- `statements`: the prebuilt hot statements; `lifecycle`: states, settled, step kinds.

Writes are portable: a conditional UPDATE checked by its row count, or an INSERT whose key
conflict is the answer; no dialect switches.
"""

from __future__ import annotations

from bridge.store.arrivals import Arrivals
from bridge.store.claims import Claims
from bridge.store.history import History
from bridge.store.reopens import Reopens
from bridge.store.sessions import Sessions
from bridge.store.spool import Spool
from bridge.store.watermarks import Watermarks


class Store(Arrivals, Claims, Reopens, History, Spool, Watermarks, Sessions):
    """The bridge's state, on SQLite or PostgreSQL (`Store.open(url)`)."""
