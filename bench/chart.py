"""bench/results.png: requests/s per server and scenario, one panel per scenario.

Rules: the only drawing code of the bench. matplotlib lives only in the bench venv; it is
loaded by name when a chart is drawn, so the rest of the bench imports (and type-checks)
anywhere, and a venv without it draws no chart rather than failing the run.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.figures import OURS, Key, Row
from bench.load import SCENARIOS


def can_draw() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def chart(
    rows: dict[Key, Row], scenarios: Sequence[str], servers: Sequence[str], path: Path
) -> None:
    """One panel per scenario; bars per server for each (workers, concurrency), min-max whiskers."""
    plt: Any = importlib.import_module("matplotlib.pyplot")
    plt.switch_backend("Agg")

    cols = min(3, len(scenarios))
    nrows = (len(scenarios) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6 * cols, 4 * nrows), squeeze=False)
    legend: dict[str, Any] = {}
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        configs = sorted({(k[2], k[3]) for k in rows if k[1] == scenario})
        # Only the servers measured here (HTTP/2 has fewer), each in its colour of every panel.
        shown = [(i, n) for i, n in enumerate(servers) if any(k[:2] == (n, scenario) for k in rows)]
        width = 0.8 / max(1, len(shown))
        for slot, (i, server) in enumerate(shown):
            cells = [rows.get((server, scenario, w, c)) for w, c in configs]
            xs = [j + (slot - (len(shown) - 1) / 2) * width for j in range(len(configs))]
            heights = [r.rps if r else 0.0 for r in cells]
            low = [r.rps - r.rps_min if r else 0.0 for r in cells]
            high = [r.rps_max - r.rps if r else 0.0 for r in cells]
            legend[server] = ax.bar(xs, heights, width, label=server, yerr=[low, high], capsize=2,
                                    color=f"C{i}", edgecolor="black" if server == OURS else None,
                                    linewidth=1.2)  # fmt: skip
        protocol = SCENARIOS[scenario].protocol
        ax.set_title(scenario if protocol == "h1" else f"{scenario} (HTTP/2, h2load)")
        ax.set_xticks(range(len(configs)), [f"w{w} c{c}" for w, c in configs])
        ax.set_ylabel("requests/s")
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(scenarios) :]:
        ax.axis("off")
    names = [n for n in servers if n in legend]
    handles = [legend[n] for n in names]
    fig.legend(handles, names, loc="lower center", ncol=max(1, len(names)), frameon=False)
    fig.suptitle("requests/s, median of interleaved runs (whiskers: min-max)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
