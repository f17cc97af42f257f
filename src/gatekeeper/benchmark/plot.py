"""The latency plot (PNG): p50/p99/p99.9 of every through-Envoy figure, log scale.

matplotlib is optional (`pip install 'gatekeeper[bench]'`) and imported only here, lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gatekeeper.benchmark.model import Figure

__all__ = ["PlotUnavailable", "latency_plot"]


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed, or the run has no through-Envoy figure to plot."""


def latency_plot(figures: Sequence[Figure], path: Path) -> None:
    """Write the plot of the req/s figures with latencies to `path`. Raises PlotUnavailable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable("matplotlib not installed: pip install 'gatekeeper[bench]'") from exc
    rows = [f for f in figures if f.unit == "req/s" and f.p50_ms is not None]
    if not rows:  # e.g. --only engine / scale
        raise PlotUnavailable("no through-Envoy figure in this run")
    height = max(3.0, 0.28 * len(rows) + 1.2)
    fig, ax = plt.subplots(figsize=(11, height))
    try:
        y = list(range(len(rows)))
        for offset, (attr, label) in enumerate(
            (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))
        ):
            values = [max(getattr(f, attr) or 0.0, 1e-3) for f in rows]
            ax.barh([v + (offset - 1) * 0.27 for v in y], values, height=0.27, label=label)
        ax.set_yticks(y, [f.name for f in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("latency through Envoy (ms, log scale)")
        ax.set_title("gatekeeper bench: latency by configuration and load")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
