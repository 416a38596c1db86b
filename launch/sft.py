"""Imitation baseline: `python launch/sft.py +games=[kuhn,tictactoe] [overrides...]`.

Composes the self-play config tree with conf/sft.yaml (learner.loss=sft), then fine-tunes the
model on the scripted expert's games (`spiral_games.run.sft.imitate`): every expert move is
rendered as the model's reply to the prompt it would see, and trained on by NLL with the same
learner, evaluation and checkpoints as self-play (docs/training.md, "Imitation baseline").
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
from pathlib import Path

from spiral_games.config.compose import compose_run_config
from spiral_games.errors import SpiralError

REPO = Path(__file__).resolve().parents[1]

USAGE = """usage: python launch/sft.py +games=[kuhn,tictactoe] [key=value ...] [--cfg]

  +games=[a,b]   games whose scripted expert is imitated, from conf/games/ (required)
  key=value      any override, checked against the schema (e.g. sft.demonstrations=512)
  --cfg          print the resolved config and exit
"""


def main(argv: list[str]) -> int:
    """Run the imitation job; returns the process exit code."""
    if {"-h", "--help"} & set(argv):
        print(USAGE)
        return 0
    print_only = "--cfg" in argv
    overrides = [a for a in argv if a != "--cfg"]
    signal.signal(signal.SIGTERM, _interrupt)  # unwinds like Ctrl-C: saved, actors stopped
    try:
        cfg = compose_run_config(REPO / "conf", overrides, config_name="sft")
        print(json.dumps(dataclasses.asdict(cfg), indent=2))
        if print_only:
            return 0
        from spiral_games.run.sft import imitate

        run_dir = imitate(cfg)
    except SpiralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the run is saved up to its last checkpoint (a step cut off in its "
            "update is not); launch/sft.py does not resume: rerun it",
            file=sys.stderr,
        )
        return 130
    finally:
        from spiral_games.actors.runtime import stop_ray

        stop_ray()
    print(f"\nrun finished: {run_dir} (metrics.jsonl, demonstrations.jsonl, checkpoints/)")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one must not cut teardown
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":  # vLLM spawns its engine core: keep the guard
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))
