"""Benchmarks: `python launch/benchmark.py {rollout,learner,sync,iteration,precision} [overrides]`
prints a table and writes JSON to output_dir. What each one measures: `spiral_games.perf`."""

from __future__ import annotations

import sys
from pathlib import Path

from spiral_games.perf.suite import BENCHMARKS, run_benchmark

REPO = Path(__file__).resolve().parents[1]
USAGE = f"usage: python launch/benchmark.py {{{','.join(BENCHMARKS)}}} [+games=[kuhn]] [overrides]"


def main(argv: list[str]) -> int:
    """Run the named benchmark; returns the process exit code."""
    if not argv or argv[0] not in BENCHMARKS:
        print(USAGE, file=sys.stderr)
        return 2
    return run_benchmark(argv[0], argv[1:], REPO / "conf")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
