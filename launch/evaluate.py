"""Scores checkpoints on MATH500, AIME24/25, AMC23, Minerva Math and GPQA-Diamond, offline.

    python launch/evaluate.py --compare base=smollm2-135m trained=runs/x/checkpoints/step_000004 \
        data_dir=../shared/data/eval limit=10 benchmarks=[math500,gpqa_diamond]

Writes results.json (per-sample records), report.md (benchmarks x checkpoints, with deltas) and
chart.png to output_dir. Any key of conf/evaluate.yaml can be overridden.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from spiral_games.config.compose import compose_run_config
from spiral_games.errors import ConfigError, SpiralError

REPO = Path(__file__).resolve().parents[1]


def to_overrides(argv: list[str]) -> list[str]:
    """`--compare a=X b=Y` becomes `+models.a=X +models.b=Y`; the rest are Hydra overrides."""
    if "--compare" not in argv:
        return argv
    rest, pairs = [], []
    for arg in (a for a in argv if a != "--compare"):
        key, sep, value = arg.partition("=")
        if sep and key.isidentifier() and key not in KNOWN_KEYS:
            pairs.append(f"+models.{key}='{value}'")
        else:
            rest.append(arg)
    if not pairs:
        raise ConfigError("--compare takes label=model pairs, e.g. base=smollm2-135m.")
    return [*rest, *pairs]


KNOWN_KEYS = {
    "benchmarks",
    "data_dir",
    "hf_datasets",
    "limit",
    "n_samples",
    "temperature",
    "top_p",
    "max_tokens",
    "max_model_len",
    "engine",
    "dtype",
    "seed",
    "output_dir",
    "models",
}


def main(argv: list[str]) -> int:
    """Run the harness; returns the process exit code."""
    from spiral_games.reasoning.harness import HarnessConfig, run_harness

    try:
        cfg = compose_run_config(REPO / "conf", to_overrides(argv), "evaluate", HarnessConfig)
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
