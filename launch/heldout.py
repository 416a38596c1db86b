"""Scores models on held-out TextArena games against a random opponent, side by side:

    python launch/heldout.py --compare base=smollm2-135m trained=runs/x/checkpoints/step_000004 \
        envs=[ConnectFour-v0,PigDice-v0] games_per_game=200 harness=true

By default SPIRAL's five held-out games (Snake, ConnectFour, PigDice, LiarsDice,
TruthAndDeception) and model.name alone. Writes results.json, heldout.md (the transfer table and
win/draw/loss/invalid rates ± SE) and heldout.png to output_dir, and prints the tables; with
harness=true also the MATH/GPQA harness on the same models (reasoning/). Any key of
conf/heldout.yaml can be overridden. A stopped call continues with resume=<its output_dir>
(the same command otherwise): only the (model, game) scores it had not written are played.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

from spiral_games.config.compose import compare_overrides, compose_run_config
from spiral_games.config.schema import HeldoutConfig
from spiral_games.errors import ConfigError, SpiralError

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    """Run the held-out evaluation; returns the process exit code."""
    from spiral_games.run.heldout import run_heldout

    known = {f.name for f in dataclasses.fields(HeldoutConfig)}
    try:
        overrides = compare_overrides(argv, known)
        if any(o.lstrip("+~").startswith("games=") for o in overrides):
            raise ConfigError(
                "launch/heldout.py takes its games as envs=[...]: TextArena env ids or games of "
                "conf/games/, e.g. envs=[ConnectFour-v0,PigDice-v0]."
            )
        cfg = compose_run_config(REPO / "conf", overrides, "heldout", HeldoutConfig)
        out = run_heldout(cfg, REPO / "conf")
    except SpiralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((out / "heldout.md").read_text())
    print(f"reports: {out}/heldout.md, heldout.png, results.json, transcripts/")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1:]))
