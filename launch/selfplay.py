"""Self-play entry point: `python launch/selfplay.py +games=[kuhn,tictactoe] [overrides...]`.

Composes the Hydra config (conf/), validates it against the typed schema, then runs self-play
RL (`spiral_games.run.trainer.train`): Ray rollout workers play the selected games with one policy
in both seats, the learner updates it with RAE advantages and pushes the weights back.
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

USAGE = """usage: python launch/selfplay.py +games=[kuhn,tictactoe] [key=value ...] [--cfg]

  +games=[a,b]   games to play, from conf/games/ (required)
  key=value      any override, checked against the schema (e.g. model=tiny-random)
  --cfg          print the resolved config and exit
"""


def main(argv: list[str]) -> int:
    """Run the self-play job; returns the process exit code."""
    if {"-h", "--help"} & set(argv):
        print(USAGE)
        return 0
    print_only = "--cfg" in argv
    overrides = [a for a in argv if a != "--cfg"]
    # SIGTERM unwinds like Ctrl-C: the trainer saves its completed steps, every actor and the
    # vLLM engines are stopped, and then Ray with all of its processes.
    signal.signal(signal.SIGTERM, _interrupt)
    cfg = None
    try:
        cfg = compose_run_config(REPO / "conf", overrides)
        print(json.dumps(dataclasses.asdict(cfg), indent=2))
        if print_only:
            return 0
        from spiral_games.run.trainer import train

        run_dir = train(cfg)
    except SpiralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f" output_dir={cfg.output_dir}" if cfg is not None else ""
        print(
            "\ninterrupted: the run is saved up to its last checkpoint (the steps it completed); "
            f"continue with the same command and train.resume=true{where}",
            file=sys.stderr,
        )
        return 130
    finally:
        from spiral_games.actors.runtime import stop_ray

        stop_ray()
    print(f"\nrun finished: {run_dir} (metrics.jsonl, transcripts/, checkpoints/)")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one must not cut teardown
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":  # vLLM spawns its engine core: keep the guard
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main(sys.argv[1:]))
