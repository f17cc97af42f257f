"""Decision statistics for the operator dashboard: counted per process, summed in Redis.

Three parts, one job each:

- `DecisionStats` (the hot path): two dict increments per decision, no clock, no I/O.
- `StatsFlusher` (a supervised loop, STYLE rule 7): once a second it takes the counts and adds
  them with HINCRBY, in one pipeline, to the hash of the second that just ended
  (`KeySpace.stats_second`, TTL `ttl_s`), so every process and worker sums into the same hash.
  Only the `top_customers` busiest customers of each process-second are written, which keeps
  the hashes small under many customers; the dashboard's top list is therefore a close lower
  bound, while the outcome counts are exact.
- `StatsReader`: decisions per second by outcome over the last `window_s` seconds, denials by
  reason, top customers, the billing group's stream lag, and recent alerts; one snapshot per
  second is shared by every dashboard that asks in that second.

A Redis error while flushing drops that second's counts (logged, counted in `dropped`): the
statistics are for watching, never for billing.
"""

from gatekeeper.stats.reader import (
    AlertJson,
    CustomerCount,
    DenialsReader,
    StatsReader,
    StatsSnapshot,
    StreamLag,
)
from gatekeeper.stats.recorder import (
    ALLOWED_CLASSES,
    OUTCOME_CLASSES,
    DecisionStats,
    StatsFlusher,
    outcome_class,
)

__all__ = [
    "ALLOWED_CLASSES",
    "OUTCOME_CLASSES",
    "AlertJson",
    "CustomerCount",
    "DecisionStats",
    "DenialsReader",
    "StatsFlusher",
    "StatsReader",
    "StatsSnapshot",
    "StreamLag",
    "outcome_class",
]
