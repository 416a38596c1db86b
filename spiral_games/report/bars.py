"""Grouped bar charts with error bars: one group per game or benchmark, one bar per model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def grouped_bars(
    ax: Any,
    groups: Sequence[str],
    values: Mapping[str, Sequence[float]],
    errors: Mapping[str, Sequence[float]],
    ylabel: str,
) -> None:
    """Draw on the matplotlib axes `ax` a bar per model (`values`' keys, in order) in each of
    `groups`, ± `errors`, with a legend."""
    width = 0.8 / max(len(values), 1)
    for i, (model, heights) in enumerate(values.items()):
        xs = [g + i * width for g in range(len(groups))]
        ax.bar(xs, heights, width, yerr=errors[model], label=model, capsize=3)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], groups)
    ax.set_ylabel(ylabel)
    ax.legend()


def save_figure(fig: Any, path: Any) -> None:
    """Write `fig` to `path` as a PNG and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
