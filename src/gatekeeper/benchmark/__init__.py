"""`gatekeeper bench`: gatekeeper measured against its own ceilings in one run (issue 6).

Modules: command (CLI), options (scenarios, durations), runner (orchestration), processes and
stack (children on 127.0.0.1), bootstraps (Envoy configs), noop (no-op authorizers), loadgen
(wrk), resp (raw EVALSHA), inprocess (gatekeeper in the bench's process), scenarios/*,
correctness, model, report, plot.
"""

__all__: list[str] = []
