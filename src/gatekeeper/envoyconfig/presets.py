"""The bootstraps shipped in the repository, as the `gatekeeper envoy-config` flags that make
them, and where copies of them live. `scripts/gen-envoy` (this module's `main`) rewrites them;
tests/envoyconfig checks they are current.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["COPIES", "PRESETS", "main", "write_all"]

# file under the repository → its flags (exactly what its header names: args.to_argv's form)
PRESETS: Mapping[str, tuple[str, ...]] = {
    "envoy/front-proxy.yaml": ("--mode", "http", "--settlement", "--no-rate-limit"),
    "envoy/front-proxy-grpc.yaml": (
        "--mode", "grpc", "--route-feature", "/v1/images=chat_requests:5",
        "--settlement", "--no-rate-limit",
    ),
    "envoy/rate-limit.yaml": (
        "--no-ext-authz", "--listen", "127.0.0.1:10001", "--admin", "127.0.0.1:9902",
        "--no-settlement", "--rate-limit",
    ),
    "envoy/sidecar.yaml": ("--mode", "grpc", "--sidecar", "--settlement", "--no-rate-limit"),
}  # fmt: skip

# byte-for-byte copies: the package's (for an installed `gatekeeper demo`/bench), the chart's
COPIES: Mapping[str, tuple[str, ...]] = {
    "envoy/front-proxy.yaml": ("src/gatekeeper/data/envoy/front-proxy.yaml",),
    "envoy/front-proxy-grpc.yaml": ("src/gatekeeper/data/envoy/front-proxy-grpc.yaml",),
    "envoy/rate-limit.yaml": ("src/gatekeeper/data/envoy/rate-limit.yaml",),
    "envoy/sidecar.yaml": ("charts/gatekeeper/files/envoy-sidecar.yaml",),
}


def write_all(root: Path) -> list[Path]:
    """Generate every preset and its copies under `root`; the paths written."""
    from gatekeeper.envoyconfig.build import bootstrap_yaml  # envoy-data-plane
    from gatekeeper.envoyconfig.command import parse_options

    written: list[Path] = []
    for name, argv in PRESETS.items():
        text = bootstrap_yaml(parse_options(argv))
        for target in (name, *COPIES.get(name, ())):
            path = root / target
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    root = Path(args[0]) if args else Path.cwd()
    for path in write_all(root):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
