"""`gatekeeper demo`: the whole product on one machine (issue 8 item 4).

orchestrator (start, watch, stop) · children (serve/worker processes) · policy (demo.yaml +
demo-customers.yaml) · upstream (sample LLM API) · webhooks (alert receiver) · traffic
(generator) · usage (GetUsage poller) · progress (terminal view) · banner · ports · command (CLI).
"""

from gatekeeper.demo.command import DEMO

__all__ = ["DEMO"]
