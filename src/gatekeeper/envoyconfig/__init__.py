"""Envoy bootstraps for gatekeeper, generated from envoy-data-plane's typed classes.

`gatekeeper envoy-config` (command.py) turns flags (args.py) into `EnvoyConfigOptions`
(options.py); build.py and filters.py construct the typed `Bootstrap`; render.py writes it as
commented YAML under a header (header.py). The bootstraps shipped under envoy/ are outputs of
presets.py's flag lists, checked by tests/envoyconfig.

Only the light modules are imported here: build.py and filters.py import envoy-data-plane
(~450 ms) and are loaded by the `envoy-config` verb, tests and the bench alone.
"""

from gatekeeper.envoyconfig.options import (
    Address,
    EnvoyConfigOptions,
    Mode,
    OptionsError,
    RouteFeature,
)

__all__ = ["Address", "EnvoyConfigOptions", "Mode", "OptionsError", "RouteFeature"]
