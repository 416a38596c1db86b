"""Plays fixed opponents against each other on the configured games, prints a results table and
writes transcripts. Useful to check a new game before training on it:

    python launch/play.py +games=[nim] --seats=random,expert --episodes=20
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spiral_games.config.compose import compose_run_config
from spiral_games.errors import SpiralError

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    """Play the matches; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", default="random,random", help="opponent in seat 0,1")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", default=None, help="transcripts dir (default: output_dir)")
    args, overrides = parser.parse_known_args(argv)
    try:
        return _play(args, overrides)
    except SpiralError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _play(args: argparse.Namespace, overrides: list[str]) -> int:
    from spiral_games.errors import ConfigError
    from spiral_games.play.loop import GameJob, play_games
    from spiral_games.play.registry import build_opponent, build_rules
    from spiral_games.report.transcripts import write_transcripts

    seats = args.seats.split(",")
    if len(seats) != 2 or args.episodes < 1:
        raise ConfigError("Use --seats=A,B (two opponent names) and --episodes >= 1.")
    cfg = compose_run_config(REPO / "conf", overrides)
    out_dir = Path(args.out or cfg.output_dir)
    print(
        f"{'game':<14}{'seat0':<10}{'seat1':<10}{'P0 wins':>8}{'draws':>7}{'P1 wins':>8}"
        f"{'invalid':>8}{'turns':>7}"
    )
    for name, game in cfg.games.items():
        rules = build_rules(name, game)
        policies = (
            build_opponent(name, game, seats[0], cfg.seed),
            build_opponent(name, game, seats[1], cfg.seed + 1),
        )
        jobs = [GameJob(rules, cfg.seed + k, policies) for k in range(args.episodes)]
        episodes = play_games(jobs)
        write_transcripts(episodes, out_dir / "transcripts" / f"{name}.jsonl")
        p0 = sum(e.returns[0] > e.returns[1] for e in episodes)
        p1 = sum(e.returns[1] > e.returns[0] for e in episodes)
        invalid = sum(e.invalid_role is not None for e in episodes)
        turns = sum(len(e.turns) for e in episodes) / len(episodes)
        print(
            f"{name:<14}{seats[0]:<10}{seats[1]:<10}{p0:>8}{len(episodes) - p0 - p1:>7}"
            f"{p1:>8}{invalid:>8}{turns:>7.1f}"
        )
    print(f"transcripts: {out_dir / 'transcripts'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
