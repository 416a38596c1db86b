"""Renders a run's page, one static HTML file: python launch/view.py <run_dir>.

On top the before/after table (summary.json or metrics.jsonl) and curves.png; below, every saved
game (transcripts/, eval/) with its state drawn turn by turn, filterable by game, step, players
and outcome. A URL hash preselects the filters: replay.html#game=kuhn&step=0.
"""

from __future__ import annotations

import sys
from pathlib import Path

from spiral_games.run.replay import render_run

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    """Write <run_dir>/replay.html; returns the exit code."""
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print(
            "usage: python launch/view.py <run_dir>  (a run directory: transcripts/, eval/, "
            "metrics.jsonl or summary.json)",
            file=sys.stderr,
        )
        return 2
    print(render_run(Path(argv[0]), REPO / "conf"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
