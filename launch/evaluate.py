"""Scores checkpoints on MATH500, AIME24/25, AMC23, Minerva Math and GPQA-Diamond, offline.

    python launch/evaluate.py --compare base=smollm2-135m trained=runs/x/checkpoints/step_000004 \
        data_dir=../shared/data/eval limit=10 benchmarks=[math500,gpqa_diamond]

Writes results.json (per-sample records), report.md (benchmarks x checkpoints, with deltas) and
chart.png to output_dir. Any key of conf/evaluate.yaml can be overridden.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

from spiral_games.config.compose import compare_overrides, compose_run_config
from spiral_games.config.schema import HarnessConfig
from spiral_games.errors import SpiralError

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    """Run the harness; returns the process exit code."""
    from spiral_games.reasoning.harness import run_harness

    known = {f.name for f in dataclasses.fields(HarnessConfig)}
    try:
        overrides = compare_overrides(argv, known)
        cfg = compose_run_config(REPO / "conf", overrides, "evaluate", HarnessConfig)
        out = run_harness(cfg)
    except SpiralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((out / "report.md").read_text())
    print(f"reports: {out}/results.json, report.md, chart.png")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1:]))
