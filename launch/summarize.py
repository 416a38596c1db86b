"""Summarise finished runs: a before/after table, summary.json and a learning-curve PNG.

    python launch/summarize.py rae_on=runs/cpu_kuhn rae_off=runs/cpu_kuhn_no_rae \
        --out docs/results/cpu_kuhn
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from spiral_games.errors import SpiralError
from spiral_games.report.summary import plot_runs, summarize, summary_markdown


def main(argv: list[str]) -> int:
    """Write summary.json, summary.md and curves.png for LABEL=RUN_DIR pairs; exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR (or just RUN_DIR)")
    parser.add_argument("--out", required=True, help="directory for the outputs")
    args = parser.parse_args(argv)
    runs = {}
    for item in args.runs:
        label, _, path = item.rpartition("=")
        runs[label or Path(path).name] = Path(path)
    try:
        summaries = {label: summarize(path) for label, path in runs.items()}
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summaries, indent=2))
        (out / "summary.md").write_text(summary_markdown(summaries))
        plot_runs(runs, out / "curves.png")
    except SpiralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_markdown(summaries))
    print(f"wrote {out / 'summary.json'}, {out / 'summary.md'}, {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
